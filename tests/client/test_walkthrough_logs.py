"""Client and site logs together hold every log line shape of the Entra walk-through (seed-walkthrough.txt)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cmg_protocol.logformat import parse_cmtrace_line
from harness.client import outcome as oc
from harness.client.clientlogs import CLIENT_LOG_FILES
from harness.client.transport import run_client
from mock_site.testing import RunningSite, running_site

GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UGUID = GUID.replace("a-f", "A-F")
SID = r"S-1-5-21-\d+-\d+-\d+-\d+"
WHEN = r"\d\d/\d\d/\d{4} \d\d:\d\d:\d\d"
HOST = r"[0-9A-Za-z.:\-]+"
SERVER = r"/CCM_Proxy_ServerAuth/\d+"

# (log file, pattern) in the walk-through's order; the patterns match the whole text of a line.
SHAPES: list[tuple[str, str]] = [
    # Client installation, 1. AAD info request
    ("ccmsetup.log", rf"Getting AAD info from CMG '{HOST}'"),
    ("ccmsetup.log", (rf"SMS CCM 5\.0: Host={HOST}, Path=/CCM_Proxy_ServerAuth/AADAuthInfo\?TenantID={GUID}, "
                     r"Port=\d+, Protocol=https, CcmTokenAuth=0, Flags=0x1304, Options=0xe0")),
    ("ccmsetup.log", r"Created connection on port \d+"),
    ("ccmsetup.log", r"Enabled SSL revocation check\."),
    # 2. Entra token request (device, then the WAM failure and the user token fallback)
    ("ccmsetup.log", (rf"Getting AAD \(device\) token with: ClientId = {GUID}, ResourceUrl = https://ConfigMgrService, "
                     r"AccountId = \S+")),
    ("ccmsetup.log", r"WAM token request failed\. Status 5, Details 'AAD WAM extension error'"),
    ("ccmsetup.log", r"Failed to get AAD token\.\."),
    ("ccmsetup.log", r"Unknown error \(Error: D0090016; Source: Unknown\)"),
    ("ccmsetup.log", r"Failed to get AAD token for 'S-1-5-18' from WAM API\. Error 0xd0090016"),
    ("ccmsetup.log", rf"Falling back to get user '{SID}' token for system\.\.\."),
    ("ccmsetup.log", (rf"Getting AAD \(user\) token with: ClientId = {GUID}, ResourceUrl = https://ConfigMgrService, "
                     rf"AccountId = {UGUID}")),
    ("ccmsetup.log", rf"Retrieved AAD token for AAD user '{GUID}'"),
    # 3.1 CCM token request
    ("ccmsetup.log", rf"Getting CCM Token from STS server '{HOST}{SERVER}'"),
    ("ccmsetup.log", rf"Getting CCM Token from https://{HOST}{SERVER}/CCM_STS"),
    # 3.2 CMG (the CMGService.log traffic line)
    # The walk-through's sample, upper-cased as the CMG writes it: RequestUri: /CCM_PROXY_SERVERAUTH/<id>/CCM_STS
    ("CMGService.log", (r"RequestUri: /CCM_PROXY_SERVERAUTH/\d+/CCM_STS  RequestCount: \d+  RequestSize: \d+ Bytes  "
                       r"ResponseCount: \d+  ResponseSize: \d+ Bytes  AverageElapsedTime: \d+ ms")),
    # 3.3 connection point rewrite
    ("SMS_CLOUD_PROXYCONNECTOR.log", (rf"Switched to internal URL\. Replaced 'https://{HOST}{SERVER}/CCM_STS' in   "
                                     rf"'https://{HOST}{SERVER}/CCM_STS' with 'https://{HOST}/CCM_STS' and got "
                                     rf"'https:///{HOST}/CCM_STS")),
    # 3.4 CCM_STS
    ("CCM_STS.log", r"ProcessRequest - Start"),
    ("CCM_STS.log", rf"Incoming request URL: https://{HOST}/CCM_STS"),
    ("CCM_STS.log", (rf"Validated AAD token\. TokenType: UDA TenantId: {GUID} UserId: {GUID} DeviceId: {GUID} "
                    rf"OnPrem_UserSid: {SID} OnPrem_DeviceSid: ?")),
    ("CCM_STS.log", r"TokenType is UDA"),
    ("CCM_STS.log", (rf"Created SCCM token, token type: UDA, hierarchyId: {GUID}, userId: {GUID}, "
                    rf"deviceId: GUID:{UGUID}")),
    ("CCM_STS.log", r"Issued token"),
    ("CCM_STS.log", r"Return token to client"),
    # 4. content location
    ("ccmsetup.log", rf"Cached encrypted token for 'S-1-5-18'\. Will expire at '{WHEN}'"),
    ("ccmsetup.log", (rf"ccmsetup: Host={HOST}, Path={SERVER}/ccm_system_tokenauth/request, Port=\d+, Protocol=https, "
                     r"CcmTokenAuth=1, Flags=0x4100, Options=0xe0")),
    ("ccmsetup.log", rf"Sending location request to '{HOST}{SERVER}' with payload '<SiteInformationRequest .*'"),
    ("ccmsetup.log", r"Appending CCM Token to the header\."),
    ("ccmsetup.log", r"Received message '<SiteInfoReply SchemaVersion=\"1\.00\">.*</SiteInfoReply>'"),
    ("ccmsetup.log", rf"Checking the URL 'https://{HOST}{SERVER}/CCM_Client/ccmsetup\.cab'?"),
    ("ccmsetup.log", rf"ccmsetup: Host={HOST}, Path={SERVER}/CCM_Client"),
    ("ccmsetup.log", rf"Found a valid online MP 'https://{HOST}{SERVER}'?"),
    ("ccmsetup.log", r"Searching for DP locations from MP\(s\)\.\.\."),
    ("ccmsetup.log", r"CCMSETUP bootstrap from Internet: 1"),
    ("ccmsetup.log", r"Sending message body '<ContentLocationRequest SchemaVersion=\"1\.00\" BGRVersion=\"1\">.*'"),
    ("ccmsetup.log", rf"The location 'https://{HOST}/downloadrestservice\.svc/getcontentxmlsecure\?pid=\w+&cid=\w+'?"),
    ("ccmsetup.log", (r"Installing version 5\.00\.8968\.1000 of the client with product code "
                     r"\{66653948-0717-4D50-B0B9-ED66FDED2DDB\}")),
    ("ccmsetup.log", r"Running installation package"),
    ("ccmsetup.log", rf"Package:     C:\\WINDOWS\\ccmsetup\\\{{{UGUID}\}}\\client\.msi"),
    # Client registration, 1.
    ("ClientIDManagerStartup.log", r"AADJoinStatusTask: Client hasn't been registered yet\."),
    ("ClientIDManagerStartup.log", r"RegEndPoint: Event notification: CCM_RemoteClient_Reassigned"),
    ("ClientIDManagerStartup.log", (r"RegEndPoint: Received notification for site assignment change from '<none>' to "
                                   r"'MEM'\.")),
    ("ClientIDManagerStartup.log", r"\[RegTask\] - Starting registration, attempt 1\."),
    ("ClientIDManagerStartup.log", (rf"\[RegTask\] - Client is not registered\. Sending registration request for "
                                   rf"GUID:{UGUID} \.\.\.")),
    ("ClientIDManagerStartup.log", r"Registering client using AAD auth\."),
    # 2. Entra token for registration
    ("ADALOperationProvider.log", (rf"Getting AAD \(user\) token with: ClientId = {GUID}, "
                                  rf"ResourceUrl = https://ConfigMgrService, AccountId = {UGUID}")),
    ("ADALOperationProvider.log", rf"Retrieved AAD token for AAD user '{GUID}'"),
    # 3. registration at the MP
    ("MP_RegistrationManager.log", rf"Registering device using AAD auth: DeviceId='{GUID} ', TenantId='{GUID}'"),
    ("MP_RegistrationManager.log", rf"Processing Registration request from Client 'GUID:{UGUID}'"),
    ("ClientIDManagerStartup.log", (rf"\[RegTask\] - Client is registered\. Server assigned ClientID is GUID:{UGUID}\. "
                                   r"Approval status 3")),
    # 4. new CCM token
    ("ClientIDManagerStartup.log", rf"Getting CCM Token from STS server '{HOST}{SERVER}'"),
    ("ClientIDManagerStartup.log", rf"Getting CCM Token from https://{HOST}{SERVER}/CCM_STS"),
    ("ClientIDManagerStartup.log", rf"Cached encrypted token for 'S-1-5-18'\. Will expire at '{WHEN}'"),
    ("SMS_CLOUD_PROXYCONNECTOR.log", (rf"MessageID: {GUID} RequestURI: https://{HOST}/CCM_STS EndpointName: CCM_STS "
                                     r"ResponseHeader: HTTP/1\.1 200 OK ~~ ResponseBodySize: \d+ ElapsedTime: \d+ ms")),
    # The connection point's per-message lines of the public log samples (beside the walk-through's)
    ("SMS_CLOUD_PROXYCONNECTOR.log", rf"Forwarding proxy message {GUID} to URL: https://{HOST}/CCM_STS"),
    ("SMS_CLOUD_PROXYCONNECTOR.log", rf"Received response https://{HOST}/CCM_STS for message {GUID}: HTTP/1\.1 200 OK"),
    # CCM token renewal (CcmMessaging.log)
    ("CcmMessaging.log", (rf"Sending remote sync message '\{{{UGUID}\}}' to host '{HOST}{SERVER}' endpoint "
                         r"'MP_PolicyManager'\. Flags 0x280, sender account S-1-5-18")),
    ("CcmMessaging.log", rf"CCM Token for 'S-1-5-18' \({WHEN}\) is already expired or close to expire"),
    ("CcmMessaging.log", rf"Getting CCM Token from https://{HOST}{SERVER}/CCM_STS"),
    ("CcmMessaging.log", rf"Cached encrypted token for 'S-1-5-18'\. Will expire at '{WHEN}'"),
    ("CcmMessaging.log", (rf"ccmhttp: Host={HOST}, Path={SERVER}/ccm_system_tokenauth/request, Port=\d+, "
                         r"Protocol=https, CcmTokenAuth=1, Flags=0x4200, Options=0x1e0")),
    ("CcmMessaging.log", rf"Target URL scheme is HTTPS: https://{HOST}{SERVER}/ccm_system_tokenauth/request"),
    ("CcmMessaging.log", r"Appending CCM Token to the header\."),
    ("CcmMessaging.log", rf"Message '\{{{UGUID}\}}' got reply message '\{{{UGUID}\}}' to endpoint '\w+'"),
    # Common issues: root CA missing
    ("ccmsetup.log", r"\[CCMHTTP\] ERROR: URL=https://\S+, Code=12175, Text=ERROR_WINHTTP_SECURE_FAILURE"),
]


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, list[str]]]:
    """Three devices' lives (WAM fallback with a renewal, root CA missing) and the site's logs, by file."""
    state = tmp_path_factory.mktemp("site")
    # Time scale 1200, not faster: the validation leeway (0.25 s) stays clear of request times on a busy machine.
    with running_site(state, time_scale=1200, cmgservice_log_period_seconds=0.2) as site:
        client_dir = tmp_path_factory.mktemp("clients")
        lives = _lives(site, client_dir)
        assert lives[0].success, oc.format_step_table(lives[0])
        assert lives[1].reason == oc.TLS_INVALID_CA
        site_dir = Path(site.manifest.log_dir)
        _wait_for(site_dir / "CMGService.log", "/CCM_STS")
    by_file: dict[str, list[str]] = {}
    for path in list(site_dir.glob("*.log")) + list(client_dir.glob("*/*.log")):
        by_file.setdefault(path.name, []).extend(path.read_text().splitlines())
    yield by_file


def _lives(site: RunningSite, client_dir: Path) -> list[oc.Outcome]:
    # One-second CCM tokens make the second poll renew; the WAM failure gives the fallback lines and a UDA token.
    site.set_fault("ccm_token_lifetime", params={"seconds": 1})
    try:
        fallback = run_client(site.manifest, "wam=device_fails_d0090016", seed=1, polls=3,
                              log_dir=client_dir / "fallback")
    finally:
        site.clear_fault("ccm_token_lifetime")
    no_root = run_client(site.manifest, "root_ca_missing", seed=2, polls=1, log_dir=client_dir / "no-root")
    return [fallback, no_root]


def _wait_for(path: Path, text: str, seconds: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.05)


def _text(line: str, file: str) -> str:
    if file in CLIENT_LOG_FILES or "[LOG[" in line:
        return parse_cmtrace_line(line).text
    return line.split("~~  $$<", 1)[0].strip()


@pytest.mark.parametrize(("file", "pattern"), SHAPES, ids=[f"{f}:{p[:40]}" for f, p in SHAPES])
def test_the_logs_hold_the_walkthrough_line(logs: dict[str, list[str]], file: str, pattern: str) -> None:
    """A line of this shape is in this log file."""
    shape = re.compile(pattern)
    texts = [_text(line, file) for line in logs.get(file, [])]
    assert any(shape.fullmatch(text) for text in texts), f"no line in {file} matches {pattern!r}"


def test_every_client_log_line_is_a_cmtrace_entry(logs: dict[str, list[str]]) -> None:
    """CMTrace and OneTrace can read every line the client writes."""
    for file in CLIENT_LOG_FILES:
        for line in logs.get(file, []):
            parse_cmtrace_line(line)
