"""Test helpers for our tests and users' tests: a real mock site on loopback, with real TLS, in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cmg_protocol.urlmap import Route
from mock_site.asgi import HttpRequest
from mock_site.cmg import CmgApp
from mock_site.config import DEFAULT_CLIENT_APP_ID, DEFAULT_RESOURCE_URI, DEFAULT_TENANT_ID, SiteConfig
from mock_site.manifest import ManifestTenant, RoleUrl, SiteManifest
from mock_site.server import Send
from mock_site.site import Site


class TokenBlindCmgApp(CmgApp):
    """A deliberately broken CMG that forwards requests whatever token they carry (or none), as a naive proxy would.

    Test-only: it lets tests prove the harness's verdicts catch such a proxy (the MP then refuses the tokens). Only
    ``running_site(..., unsafe_skip_token_checks=True)`` and the hidden ``up --unsafe-skip-token-checks`` use it.
    """

    async def check_token(self, route: Route, request: HttpRequest, send: Send) -> dict[str, str] | None:
        return {}


def cmg_app_type(*, unsafe_skip_token_checks: bool = False) -> type[CmgApp]:
    """The CMG class a site runs: the real one, or with the test-only switch the token-blind one."""
    return TokenBlindCmgApp if unsafe_skip_token_checks else CmgApp


@dataclass
class RunningSite:
    """A site serving in a background thread; ``manifest`` is what ``site.json`` holds."""

    site: Site
    manifest: SiteManifest
    loop: asyncio.AbstractEventLoop

    @property
    def manifest_path(self) -> Path:
        return self.site.manifest_path

    def call(self, coroutine: Any, timeout: float = 30.0) -> Any:
        """Run a coroutine in the site's loop (e.g. to touch site state safely) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def set_fault(self, name: str, **settings: Any) -> dict[str, Any]:
        """Switch a fault on through the real control API."""
        return self._control("PUT", f"/{name}", settings)

    def clear_fault(self, name: str) -> dict[str, Any]:
        answer = self._control("DELETE", f"/{name}", None)
        self.wait_for_channels()
        return answer

    def reset_faults(self) -> dict[str, Any]:
        answer = self._control("POST", "/reset", None)
        self.wait_for_channels()
        return answer

    def wait_for_channels(self, timeout: float = 5.0) -> bool:
        """Wait until every running connection point has its channel to every CMG instance again (after a fault
        dropped them they come back at their next retry, within half a second); whether they have."""
        site = self.site
        running = sum(1 for client in site.channel_clients if client.running)

        async def back() -> bool:
            return all(await asyncio.gather(*(hub.wait_connected(running, timeout)
                                              for hub in site.channel_hubs.values())))

        return not site.channel_hubs or self.call(back(), timeout + 1)

    def _control(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.manifest.faults_url + path, data=data, method=method,
                                         headers={"Authorization": f"Bearer {self.manifest.faults_token}",
                                                  "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")


@contextlib.contextmanager
def running_site(state_dir: Path, **config: Any) -> Iterator[RunningSite]:
    """Start a whole mock site on 127.0.0.1 for the duration of the ``with`` block.

    ``config`` holds SiteConfig fields, plus ``logs_enabled`` and the test-only ``unsafe_skip_token_checks`` (the CMG
    forwards requests without checking their tokens: see ``TokenBlindCmgApp``).
    """
    logs_enabled = config.pop("logs_enabled", True)
    cmg_type = cmg_app_type(unsafe_skip_token_checks=config.pop("unsafe_skip_token_checks", False))
    site_config = SiteConfig(state_dir=Path(state_dir), **config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []
    site_box: list[Site] = []
    stop = asyncio.Event()

    async def main() -> None:
        try:
            site = Site(site_config, logs_enabled=logs_enabled, cmg_app_type=cmg_type)
            site_box.append(site)
            await site.start()
        except BaseException as exc:  # reported to the caller's thread
            failure.append(exc)
            started.set()
            return
        started.set()
        await stop.wait()
        await site.stop()

    thread = threading.Thread(target=lambda: loop.run_until_complete(main()), name="mock-site", daemon=True)
    thread.start()
    started.wait(60)
    if failure:
        thread.join(5)
        raise failure[0]
    site = site_box[0]
    try:
        yield RunningSite(site=site, manifest=site.manifest(), loop=loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(60)
        if not thread.is_alive():
            loop.close()


class RegisteredDevice(NamedTuple):
    """A device :meth:`SiteClient.register_device` registered: its Entra token, SMSID and CCM token."""

    entra_token: str
    smsid: str
    ccm_token: str


class SiteClient:
    """A minimal, explicit client of the mock site for protocol-level tests (the full device lives in harness.client).

    Each method is one documented exchange; nothing is retried or renewed behind the caller's back.
    """

    def __init__(self, manifest: SiteManifest, *, cmg_url: str | None = None, verify: Any = None,
                 cert: Any = None) -> None:
        import httpx

        self.manifest = manifest
        self.cmg_url = cmg_url or manifest.cmg_url or ""  # "": a site without a CMG; give the proxy's URL
        if verify is None:
            verify = _ssl_context(manifest.ca_file)
            if cert is not None:  # a client certificate (cert file, key file) for mutual TLS
                verify.load_cert_chain(*cert)
                cert = None
        self.http = httpx.Client(verify=verify, cert=cert, timeout=30.0)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SiteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def server_auth(self, tail: str) -> str:
        from cmg_protocol import urlmap

        return self.cmg_url + urlmap.server_auth_path(self.manifest.role_id, tail)

    def mutual_auth(self, tail: str) -> str:
        from cmg_protocol import urlmap

        return self.cmg_url + urlmap.mutual_auth_path(self.manifest.role_id, tail)

    def aad_auth_info(self, tenant_id: str | None = None) -> Any:
        from cmg_protocol import urlmap

        return self.http.get(self.cmg_url + urlmap.aad_auth_info_path(tenant_id or self.manifest.tenant_id))

    def entra_token(self, *, device_id: str = "8d2b4ff9-0172-4998-9851-b5324303385f", user_oid: str = "",
                    tenant_id: str | None = None, device_time: float | None = None) -> str:
        """An Entra token for ConfigMgrService: a device token, or a user (UDA) token when ``user_oid`` is given."""
        form = {
            "grant_type": "user_token" if user_oid else "device_token",
            "resource": self.manifest.resource_uri,
            "client_id": self.manifest.client_app_id,
            "device_id": device_id,
            "onprem_sid": "S-1-5-21-1527250992-855612568-2252598708-1604" if user_oid else "",
        }
        if user_oid:
            form["user_oid"] = user_oid
        if device_time is not None:
            form["device_time"] = str(device_time)
        response = self.http.post(f"{self.manifest.entra_url}/{tenant_id or self.manifest.tenant_id}"
                                  "/oauth2/token", data=form)
        response.raise_for_status()
        return response.json()["access_token"]

    def ccm_sts(self, entra_token: str) -> Any:
        return self.http.post(self.server_auth("CCM_STS"), headers={"Authorization": f"Bearer {entra_token}"})

    def ccm_token(self, entra_token: str | None = None) -> str:
        response = self.ccm_sts(entra_token or self.entra_token())
        response.raise_for_status()
        return response.json()["token"]

    def message(self, target_endpoint: str, body_xml: str, *, token: str | None, url: str | None = None,
                aad_token: str | None = None, **header_fields: Any) -> Any:
        """Send one CCM_POST message; the reply envelope is decoded into ``response.reply`` when it is one.

        ``aad_token`` goes into the registration's Entra header; ``header_fields`` override ``<Msg>`` fields.
        """
        import uuid as _uuid

        from cmg_protocol import envelope
        from cmg_protocol.registration import AAD_TOKEN_HEADER

        fields: dict[str, Any] = {"source_host": "TESTDEVICE", "message_id": "{" + str(_uuid.uuid4()).upper() + "}",
                                  "sent_time": "2026-01-01T00:00:00Z", **header_fields}
        header = envelope.MessageHeader(target_endpoint=target_endpoint, **fields)
        headers = {"Content-Type": envelope.CONTENT_TYPE, "User-Agent": envelope.USER_AGENT}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if aad_token is not None:
            headers[AAD_TOKEN_HEADER] = aad_token
        response = self.http.request(envelope.CCM_POST, url or self.server_auth("ccm_system_tokenauth/request"),
                                     content=envelope.encode_message(header, body_xml), headers=headers)
        response.reply = None  # type: ignore[attr-defined]
        if response.status_code == 200:
            response.reply = envelope.decode_message(  # type: ignore[attr-defined]
                response.headers.get("content-type"), response.content)
        return response

    def register(self, entra_token: str, *, netbios_name: str = "TESTDEVICE", url: str | None = None,
                 ccm_token: str | None = None, fq_name: str | None = None) -> Any:
        """Register as the device of ``entra_token``: the CCM token (from CCM_STS unless given) in Authorization,
        the Entra token in its registration header; signed with :func:`signing_identity_for_tests`'s key."""
        from dataclasses import replace

        from cmg_protocol import envelope, messages

        key, cert_hex = signing_identity_for_tests()
        request = messages.RegistrationRequest(
            netbios_name=netbios_name, fq_name=f"{netbios_name.lower()}.contoso.com" if fq_name is None else fq_name,
            locale_id=1033, internet_flag=2, agent_version="5.00.8968.1000", signing_cert_hex=cert_hex,
            encryption_cert_hex=cert_hex, timestamp="2026-01-01T00:00:00Z")
        request = replace(request, signature_hex=envelope.clientauth_signature(key, request.data_xml().encode("utf-16-le")))
        ccm = ccm_token if ccm_token is not None else self.ccm_token(entra_token)
        return self.message("MP_ClientRegistration", request.to_xml(), token=ccm, url=url, aad_token=entra_token)

    def register_device(self, *, device_id: str | None = None) -> RegisteredDevice:
        """Register a new device (a fresh Entra device id unless ``device_id`` is given) and get its CCM token after
        registration; a refused registration raises, naming the status."""
        import uuid as _uuid

        from cmg_protocol import messages

        entra = self.entra_token(device_id=device_id or str(_uuid.uuid4()))
        reply = self.register(entra)
        if reply.status_code != 200:
            raise AssertionError(f"registration answered {reply.status_code} {reply.reason_phrase}: {reply.text[:200]}")
        smsid = messages.RegistrationResponse.from_xml(reply.reply.body_xml).smsid
        return RegisteredDevice(entra_token=entra, smsid=smsid, ccm_token=self.ccm_token(entra))

    def policy(self, token: str | None, client_id: str, *, url: str | None = None) -> Any:
        """Ask for policy assignments as ``client_id``, with the clientauth hook of :func:`signing_identity_for_tests`."""
        from cmg_protocol import clientauth, envelope, messages

        request = messages.RequestAssignments(client_id=client_id, fqdn="testdevice.contoso.com",
                                              netbios_name="TESTDEVICE", sid="", site_code=self.manifest.site_code)
        body_xml = request.to_xml()
        key, _ = signing_identity_for_tests()
        hook = clientauth.hook_properties(key, client_id, envelope.encoded_body(body_xml, True)[1], "TESTDEVICE")
        return self.message("MP_PolicyManager", body_xml, token=token, url=url, source_id=client_id, client_auth=hook)


_TEST_IDENTITY: list[Any] = []


def signing_identity_for_tests() -> tuple[Any, str]:
    """The (RSA key, self-signed certificate as hex DER) SiteClient registers and signs with, made once per process."""
    if not _TEST_IDENTITY:
        import datetime as dt

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMS")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
                .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(key, hashes.SHA256()))
        _TEST_IDENTITY.append((key, cert.public_bytes(serialization.Encoding.DER).hex().upper()))
    return _TEST_IDENTITY[0]


def _ssl_context(ca_file: Path) -> Any:
    import ssl

    return ssl.create_default_context(cafile=ca_file)


def example_manifest(state_dir: Path = Path("/srv/cmg"), **changes: Any) -> SiteManifest:
    """A complete manifest of a whole site that is not running (for tests of code that only reads manifests)."""
    control = "http://127.0.0.1:9100"
    manifest = SiteManifest(
        cmg_url="https://127.0.0.1:9443", cmg_enabled=True, roles=("crl", "entra", "mp", "cp", "cmg"), links=(),
        token_validation_url=f"{control}/validate", cmg_urls=("https://127.0.0.1:9443",),
        cp_urls=("https://127.0.0.1:9444",), mp_url="https://127.0.0.1:9445",
        server_auth_prefix="/CCM_Proxy_ServerAuth/72186325152220500/",
        mutual_auth_prefix="/CCM_Proxy_MutualAuth/72186325152220500/", role_id="72186325152220500",
        ca_file=state_dir / "pki" / "ca.pem", cmg_cert_file=state_dir / "pki" / "cmg.pem",
        cmg_key_file=state_dir / "pki" / "cmg.key", cp_server_name="localhost",
        crl_url="http://127.0.0.1:9101/pki/site.crl", entra_url="https://127.0.0.1:9446",
        tenant_id=DEFAULT_TENANT_ID,
        tenants=(ManifestTenant(DEFAULT_TENANT_ID, True, DEFAULT_CLIENT_APP_ID, DEFAULT_RESOURCE_URI),
                 ManifestTenant("c8c82542-203c-4df9-9d86-cdd4dae67e0a", False, DEFAULT_CLIENT_APP_ID,
                                DEFAULT_RESOURCE_URI)),
        client_app_id=DEFAULT_CLIENT_APP_ID, resource_uri=DEFAULT_RESOURCE_URI, site_code="MEM",
        hierarchy_id="8ed3174b-e814-41b5-b51c-fb368f0d4003", time_scale=1.0, ccm_token_lifetime_s=28800.0,
        policy_interval_s=3600.0, faults_url=f"{control}/faults", faults_token="example-token",
        metrics_urls=tuple(RoleUrl(role, f"{control}/metrics") for role in ("cmg", "cp", "mp", "sts", "entra", "crl")),
        log_dir=state_dir / "logs", db_path=state_dir / "site.db", state_dir=state_dir, pid=1)
    return manifest.replace(**changes) if changes else manifest
