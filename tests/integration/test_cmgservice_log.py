"""CMGService.log traffic lines carry the same numbers as the Prometheus metrics for the same window."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from cmg_protocol import logformat, messages
from mock_site.testing import SiteClient, running_site


def _samples(metrics_text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def _cmg_sum(values: dict, name: str, endpoint: str) -> float:
    return sum(v for (n, labels), v in values.items()
               if n == name and ("role", "cmg") in labels and ("endpoint", endpoint) in labels)


def test_cmgservice_log_matches_the_metrics(tmp_path: Path) -> None:
    """RequestCount, RequestSize, ResponseSize and AverageElapsedTime per RequestUri equal what /metrics counted."""
    with running_site(tmp_path, time_scale=60) as site:
        with SiteClient(site.manifest) as client:
            for _ in range(3):
                entra = client.entra_token(device_id=str(uuid.uuid4()))
                install_token = client.ccm_token(entra)
                smsid = messages.RegistrationResponse.from_xml(
                    client.register(entra, ccm_token=install_token).reply.body_xml).smsid
                token = client.ccm_token(entra)
                for _ in range(2):
                    assert client.policy(token, smsid).status_code == 200
            client.aad_auth_info()
        scraped = _samples(httpx.get(site.manifest.metrics_url("cmg")).text)
        role_id = site.manifest.role_id
    lines = [line for line in (tmp_path / "logs" / "CMGService.log").read_text().splitlines() if "RequestUri:" in line]
    traffic = {t.request_uri: t for t in
               (logformat.parse_cmgservice_text(logformat.parse_smstrace_line(line).text) for line in lines)}
    # Upper-cased, as the CMG's samples print RequestUri.
    sts = traffic[f"/CCM_PROXY_SERVERAUTH/{role_id}/CCM_STS"]
    messaging = traffic[f"/CCM_PROXY_SERVERAUTH/{role_id}/CCM_SYSTEM_TOKENAUTH/REQUEST"]
    assert sts.request_count == 6  # two CCM tokens per device: before registration and after
    assert messaging.request_count == 3 + 6  # registrations and policy polls
    for entry, template in ((sts, "/CCM_Proxy_ServerAuth/{id}/CCM_STS"),
                            (messaging, "/CCM_Proxy_ServerAuth/{id}/ccm_system_tokenauth/request")):
        assert entry.request_count == _cmg_sum(scraped, "cmg_requests_total", template)
        assert entry.request_size == _cmg_sum(scraped, "cmg_request_size_bytes_sum", template)
        assert entry.response_size == _cmg_sum(scraped, "cmg_response_size_bytes_sum", template)
        seconds = _cmg_sum(scraped, "cmg_request_duration_seconds_sum", template)
        count = _cmg_sum(scraped, "cmg_request_duration_seconds_count", template)
        assert abs(entry.average_elapsed_ms - seconds / count * 1000) <= 1.0
