"""The CMG's edge over real TLS: who refuses (by the reason phrase), what the CMGService.log counts, and metric labels."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cmg_protocol import logformat
from cmg_protocol.statuses import INVALID_TOKEN
from mock_site.testing import RunningSite, SiteClient, running_site

DEVICE = "8d2b4ff9-0172-4998-9851-b5324303385f"
NOT_ONBOARDED = "c8c82542-203c-4df9-9d86-cdd4dae67e0a"


@pytest.mark.parametrize(("fault", "code"), [
    ("entra_token_expired", "IDX10223"),
    ("entra_bad_signature", "IDX10511"),
    ("entra_wrong_audience", "IDX10214"),
    ("entra_wrong_issuer", "IDX10205"),
])
def test_the_cmg_itself_refuses_bad_entra_tokens_on_the_ccm_sts_path(clean_site: RunningSite, site_client: SiteClient,
                                                                      fault: str, code: str) -> None:
    """The CMG refuses with its own status text and the IDX code; CCM_STS (behind it) would answer 'Unauthorized'."""
    clean_site.set_fault(fault, duration=30)
    bad = site_client.entra_token()
    clean_site.reset_faults()
    response = site_client.ccm_sts(bad)
    assert (response.status_code, response.reason_phrase) == (401, INVALID_TOKEN)
    assert response.headers["x-cmg-status-text"] == INVALID_TOKEN
    assert response.text == f"{INVALID_TOKEN}: {code}"


def test_the_cmg_refuses_an_entra_token_of_a_tenant_that_is_not_onboarded(site_client: SiteClient) -> None:
    """A correctly signed Entra token of a tenant the site does not know stops at the CMG (IDX10205)."""
    response = site_client.ccm_sts(site_client.entra_token(tenant_id=NOT_ONBOARDED))
    assert (response.status_code, response.reason_phrase, response.text) == (401, INVALID_TOKEN,
                                                                            f"{INVALID_TOKEN}: IDX10205")


def test_the_cmg_refuses_an_entra_token_from_a_clock_far_ahead(clean_site: RunningSite, site_client: SiteClient) -> None:
    """A device whose clock runs far ahead gets a token that is not yet valid: the CMG refuses it (IDX10222)."""
    ahead = clean_site.site.clock() + 3600.0
    response = site_client.ccm_sts(site_client.entra_token(device_time=ahead))
    assert (response.status_code, response.reason_phrase, response.text) == (401, INVALID_TOKEN,
                                                                            f"{INVALID_TOKEN}: IDX10222")


def test_a_good_entra_token_passes_the_cmg_and_ccm_sts_answers(site_client: SiteClient) -> None:
    """The control case: a valid token is not refused by anyone and CCM_STS hands out a CCM token."""
    response = site_client.ccm_sts(site_client.entra_token(device_id=str(uuid.uuid4())))
    assert response.status_code == 200 and response.json()["token"].count(".") == 2


# --- CMGService.log and metrics against what the clients sent ---------------------------------------------------


def _scrape(url: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(httpx.get(url).text) for s in f.samples]


def test_request_size_is_the_bytes_the_clients_sent(tmp_path: Path) -> None:
    """CMGService.log RequestSize and cmg_request_size_bytes equal the body bytes the clients put on the wire."""
    sent: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)

    def record(request: httpx.Request) -> None:
        sent[request.url.path] += len(request.content)
        counts[request.url.path] += 1

    with running_site(tmp_path, time_scale=60) as site:
        with SiteClient(site.manifest) as client:
            client.http.event_hooks["request"].append(record)
            for _ in range(2):
                device = client.register_device()
                assert client.policy(device.ccm_token, device.smsid).status_code == 200
            # A refused request counts too: the CMG read its body before refusing it.
            client.http.post(client.server_auth("CCM_STS"), content=b"x" * 1234, headers={"Authorization": "Bearer no"})
            entra_path = [path for path in sent if "/oauth2/" in path]
            for path in entra_path:  # Entra is not behind the CMG
                del sent[path], counts[path]
        scraped = _scrape(site.manifest.metrics_url("cmg") or "")
    lines = [line for line in (tmp_path / "logs" / "CMGService.log").read_text().splitlines() if "RequestUri:" in line]
    logged: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for line in lines:
        traffic = logformat.parse_cmgservice_text(logformat.parse_smstrace_line(line).text)
        logged[traffic.request_uri][0] += traffic.request_count
        logged[traffic.request_uri][1] += traffic.request_size
    # CMGService.log writes each RequestUri upper-cased.
    assert {uri: tuple(v) for uri, v in logged.items()} == {uri.upper(): (counts[uri], sent[uri]) for uri in sent}
    assert sent[next(uri for uri in sent if uri.endswith("/CCM_STS"))] >= 1234
    metric_total = sum(v for name, labels, v in scraped
                       if name == "cmg_request_size_bytes_sum" and labels.get("role") == "cmg")
    assert metric_total == sum(sent.values())


def test_endpoint_labels_are_route_templates_on_every_roles_scrape(site: RunningSite, site_client: SiteClient) -> None:
    """No endpoint label names a concrete role id: cardinality stays bounded, on every role's /metrics."""
    device = site_client.register_device()
    assert site_client.policy(device.ccm_token, device.smsid).status_code == 200
    site_client.aad_auth_info()
    site_client.http.get(f"{site.manifest.cmg_url}/CCM_Proxy_MutualAuth/{site.manifest.role_id}/nowhere")
    role_ids = {site.manifest.role_id}
    seen: dict[str, set[str]] = defaultdict(set)
    for role, url in ((item.role, item.url) for item in site.manifest.metrics_urls):
        for _, labels, _ in _scrape(url):
            if "endpoint" in labels:
                seen[labels.get("role", role)].add(labels["endpoint"])
    assert {"cmg", "cp", "mp"} <= seen.keys()
    for role, endpoints in seen.items():
        for endpoint in endpoints:
            assert not any(role_id in endpoint for role_id in role_ids), (role, endpoint)
            assert not re.search(r"/\d+(/|$)", endpoint), (role, endpoint)
            assert endpoint == "unmatched" or endpoint.startswith("/"), (role, endpoint)
    assert "/CCM_Proxy_ServerAuth/{id}/ccm_system_tokenauth/request" in seen["cmg"]


def test_ccm_sts_scales_the_eight_hour_lifetime_with_the_time_scale(site: RunningSite, site_client: SiteClient) -> None:
    """At --time-scale 60 a CCM token lives 8 h / 60 = 480 s (iat to exp), as the manifest announces."""
    import jwt

    assert site.manifest.time_scale == 60
    claims = jwt.decode(site_client.ccm_token(site_client.entra_token(device_id=str(uuid.uuid4()))),
                        options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(480, abs=1)
    assert site.manifest.ccm_token_lifetime_s == 480
    assert site.manifest.token_leeway_s == 5
