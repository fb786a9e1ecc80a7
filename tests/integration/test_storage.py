"""Content from the content-enabled CMG's storage: the CMG hands out a signed URL, storage serves it and nothing else."""

from __future__ import annotations

import hashlib
import re
import time
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from cmg_protocol.storage_urls import ContentXml
from harness.chaos.verdicts import FaultWindow, VerdictSettings, judge
from harness.client import events as ev
from harness.client import outcome as oc
from harness.client.transport import device_from_traits, run_client
from mock_site.testing import RunningSite, SiteClient

CONTENT = "/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001"


def _content_xml(client: SiteClient, token: str) -> ContentXml:
    response = client.http.get(client.cmg_url + CONTENT, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    return ContentXml.from_xml(response.text)


def test_the_cmg_answers_with_a_small_xml_that_points_at_its_storage(clean_site: RunningSite,
                                                                     site_client: SiteClient) -> None:
    info = _content_xml(site_client, site_client.ccm_token())
    manifest = clean_site.manifest
    assert manifest.storage_url is not None
    assert urlsplit(info.url).netloc == urlsplit(manifest.storage_url).netloc != urlsplit(manifest.cmg_url or "").netloc
    fields = dict(parse_qsl(urlsplit(info.url).query))
    assert {"tid", "oid", "iss", "alg", "st", "se", "sig"} == set(fields)
    assert fields["tid"] == manifest.tenant_id
    blob = site_client.http.get(info.url)  # no token: the signed URL is the credential
    assert blob.status_code == 200 and len(blob.content) == info.size == 64 * 1024
    assert hashlib.sha256(blob.content).hexdigest().upper() == info.sha256
    head = site_client.http.head(info.url)  # the size a GET would bring, without the bytes
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(64 * 1024), b"")


def test_the_cmg_refuses_the_content_xml_without_a_token(site_client: SiteClient) -> None:
    # No certificate and no token: the content-enabled CMG hands out no URL.
    refused = site_client.http.get(site_client.cmg_url + CONTENT)
    assert refused.status_code in (401, 403) and "sig=" not in refused.text


def test_storage_refuses_a_tampered_or_unsigned_url_with_authentication_failed(site_client: SiteClient) -> None:
    info = _content_xml(site_client, site_client.ccm_token())
    base, query = info.url.split("?", 1)
    for url in (info.url.replace("CS100001/CS100001", "CS100001/CS100002"), base,
                base + "?" + re.sub(r"oid=[^&]+", "oid=GUID%3AOTHER", query)):
        refused = site_client.http.get(url)
        assert (refused.status_code, refused.headers.get("x-cmg-status-text")) == (403, "AuthenticationFailed"), url
    assert site_client.http.post(info.url).status_code == 405


@pytest.mark.parametrize("role", ["storage", "cmg"])
def test_signed_url_expired_makes_storage_refuse_the_url(clean_site: RunningSite, site_client: SiteClient,
                                                         role: str) -> None:
    token = site_client.ccm_token()
    clean_site.set_fault("signed_url_expired", role=role, duration=30)
    info = _content_xml(site_client, token)
    expiry = dict(parse_qsl(urlsplit(info.url).query))["se"]
    if role == "cmg":  # the CMG hands out a URL that has already expired
        assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > expiry
    refused = site_client.http.get(info.url)
    assert (refused.status_code, refused.headers.get("x-cmg-status-text")) == (403, "AuthenticationFailed")
    assert "expired" in refused.text
    clean_site.clear_fault("signed_url_expired")
    assert site_client.http.get(_content_xml(site_client, token).url).status_code == 200


def test_storage_unreachable_resets_downloads_but_not_the_cmg(clean_site: RunningSite,
                                                              site_client: SiteClient) -> None:
    token = site_client.ccm_token()
    clean_site.set_fault("storage_unreachable", duration=30)
    info = _content_xml(site_client, token)  # the CMG itself still answers
    with pytest.raises(httpx.TransportError):
        site_client.http.get(info.url)


def test_storage_slow_delays_the_download(clean_site: RunningSite, site_client: SiteClient) -> None:
    info = _content_xml(site_client, site_client.ccm_token())
    clean_site.set_fault("storage_slow", duration=30, params={"latency_ms": 400})
    started = time.perf_counter()
    assert site_client.http.get(info.url).status_code == 200
    assert time.perf_counter() - started >= 0.35


def test_storage_counts_requests_bytes_and_egress_per_client_per_month(clean_site: RunningSite,
                                                                       site_client: SiteClient) -> None:
    egress = clean_site.site.storage_egress
    assert egress is not None
    before_bytes, before_clients = egress.bytes_total, egress.clients
    for _ in range(2):
        site_client.http.get(_content_xml(site_client, site_client.ccm_token()).url).raise_for_status()
    assert egress.bytes_total - before_bytes == 2 * 64 * 1024
    assert egress.clients >= max(before_clients, 1)
    assert egress.per_client_month() > 0
    metrics = site_client.http.get(clean_site.manifest.faults_url.removesuffix("/faults") + "/metrics").text
    assert re.search(r"^cmg_storage_egress_bytes_total \d", metrics, re.M)
    assert re.search(r"^cmg_storage_egress_per_client_month_bytes \d", metrics, re.M)
    assert re.search(r'role="storage"', metrics)
    assert clean_site.manifest.metrics_url("storage") is not None


def test_a_client_life_downloads_from_storage_and_not_through_the_cmg(clean_site: RunningSite) -> None:
    outcome = run_client(clean_site.manifest, "", seed=301, polls=1)
    assert outcome.success, oc.format_step_table(outcome)
    steps = {entry.step: entry.name for entry in outcome.trail}
    assert steps[ev.STEP_CONTENT_XML] == "/downloadrestservice.svc/getcontentxmlsecure"
    assert steps[ev.STEP_CONTENT_DOWNLOAD] == "/content"
    # The CMG's content traffic is the small XML exchange (the bytes came from storage).
    lines = [line for stats in clean_site.site.cmg_stats for line in stats.drain()
             if line.request_uri.lower().endswith("getcontentxmlsecure")]
    assert lines and all(line.response_size / line.response_count < 1024 for line in lines)


def _assert_expected_only_while_on(site: RunningSite, fault: str, reason: str, *, seed: int, started: float) -> None:
    """The verdict on a life that ended with ``reason``: expected while ``fault`` was on, unexpected without it."""
    profile = device_from_traits(site.manifest, "", seed=seed)
    settings = VerdictSettings.from_manifest(site.manifest)
    window = FaultWindow(fault, "storage", started - 1, time.time() + 1)
    assert judge(profile, reason, life_start=started, life_end=time.time(), windows=[window], settings=settings).expected
    assert not judge(profile, reason, life_start=started, life_end=time.time(), windows=[], settings=settings).expected


def test_a_client_asks_once_more_for_a_url_then_fails_with_storage_403(clean_site: RunningSite) -> None:
    clean_site.set_fault("signed_url_expired", duration=60)
    started = time.time()
    outcome = run_client(clean_site.manifest, "", seed=302, polls=1)
    assert (outcome.reason, outcome.step) == (oc.STORAGE_403, ev.STEP_CONTENT_DOWNLOAD)
    steps = [entry.step for entry in outcome.trail]
    assert steps.count(ev.STEP_CONTENT_XML) == 2 and steps.count(ev.STEP_CONTENT_DOWNLOAD) == 2
    _assert_expected_only_while_on(clean_site, "signed_url_expired", outcome.reason, seed=302, started=started)


def test_a_client_whose_storage_is_unreachable_fails_the_download_with_reset(clean_site: RunningSite) -> None:
    clean_site.set_fault("storage_unreachable", duration=60)
    outcome = run_client(clean_site.manifest, "", seed=303, polls=1)
    assert (outcome.reason, outcome.step) == (oc.RESET, ev.STEP_CONTENT_DOWNLOAD)


def test_a_client_whose_content_changed_in_storage_does_not_install_it(clean_site: RunningSite) -> None:
    clean_site.set_fault("content_hash_mismatch", duration=60)
    started = time.time()
    outcome = run_client(clean_site.manifest, "", seed=304, polls=1)
    assert (outcome.reason, outcome.step, outcome.error_code) == (oc.CONTENT_HASH_MISMATCH,
                                                                   ev.STEP_CONTENT_DOWNLOAD, 0x80091007)
    assert outcome.detail.startswith("content ") and "the content XML announced" in outcome.detail
    assert ev.STEP_REGISTRATION not in [entry.step for entry in outcome.trail]
    _assert_expected_only_while_on(clean_site, "content_hash_mismatch", outcome.reason, seed=304, started=started)
    clean_site.clear_fault("content_hash_mismatch")
    assert run_client(clean_site.manifest, "", seed=305, polls=1).success  # the announced content installs again
