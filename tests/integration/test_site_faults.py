"""Every server-side fault of the catalogue, switched on through the real control API, has its documented effect."""

from __future__ import annotations

import ssl
import time
import uuid

import httpx
import jwt
import pytest
from cryptography import x509

from cmg_protocol.storage_urls import ContentXml
from mock_site.faults import CATALOGUE
from mock_site.testing import RunningSite, SiteClient

POLICY_CLIENT = "GUID:00000000-0000-0000-0000-000000000001"


def _registered(client: SiteClient) -> tuple[str, str]:
    """A freshly registered device: (CCM token, SMSID)."""
    device = client.register_device()
    return device.ccm_token, device.smsid


def _timed(call):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def _cmg_certificate(manifest: dict) -> x509.Certificate:
    host, port = manifest.cmg_url.removeprefix("https://").split(":")
    pem = ssl.get_server_certificate((host, int(port)))
    return x509.load_pem_x509_certificate(pem.encode())


def _crl(client: SiteClient) -> x509.CertificateRevocationList:
    response = httpx.get(client.manifest.crl_url, timeout=10)
    response.raise_for_status()
    return x509.load_der_x509_crl(response.content)


def test_crl_unreachable_drops_the_connection(clean_site: RunningSite, site_client: SiteClient) -> None:
    """The CRL distribution point gives no answer at all while crl_unreachable is on."""
    clean_site.set_fault("crl_unreachable", duration=30)
    with pytest.raises(httpx.TransportError):
        _crl(site_client)


def test_crl_expired_serves_a_stale_crl(clean_site: RunningSite, site_client: SiteClient) -> None:
    """crl_expired serves a CRL whose nextUpdate is already past."""
    clean_site.set_fault("crl_expired", duration=30)
    assert _crl(site_client).next_update_utc.timestamp() < time.time()


def test_crl_slow_delays_the_crl(clean_site: RunningSite, site_client: SiteClient) -> None:
    """crl_slow answers after its latency."""
    clean_site.set_fault("crl_slow", duration=30, params={"latency_ms": 400})
    _, elapsed = _timed(lambda: _crl(site_client))
    assert elapsed >= 0.35


def test_cmg_cert_revoked_lists_the_cmg_certificate(clean_site: RunningSite, site_client: SiteClient) -> None:
    """cmg_cert_revoked puts the CMG server certificate's serial on the CRL, and clearing takes it off again."""
    serial = _cmg_certificate(site_client.manifest).serial_number
    clean_site.set_fault("cmg_cert_revoked", duration=30)
    assert _crl(site_client).get_revoked_certificate_by_serial_number(serial) is not None
    clean_site.clear_fault("cmg_cert_revoked")
    assert _crl(site_client).get_revoked_certificate_by_serial_number(serial) is None


def test_cp_cert_revocation_offline_refuses_mp_bound_requests(clean_site: RunningSite,
                                                              site_client: SiteClient) -> None:
    """The connection point answers 403 CMGConnector_Clientcertificaterequired (0x87d0027e)."""
    token, smsid = _registered(site_client)
    clean_site.set_fault("cp_cert_revocation_offline", duration=30)
    response = site_client.policy(token, smsid)
    assert (response.status_code, response.reason_phrase) == (403, "CMGConnector_Clientcertificaterequired")


def test_tenant_not_onboarded_hides_the_aad_properties(clean_site: RunningSite, site_client: SiteClient) -> None:
    """AADAuthInfo returns no properties for the device's tenant while tenant_not_onboarded is on."""
    clean_site.set_fault("tenant_not_onboarded", duration=30)
    assert site_client.aad_auth_info().status_code == 404


def test_sts_unavailable_is_cmgconnector_unauthorized(clean_site: RunningSite, site_client: SiteClient) -> None:
    """With CCM_STS unreachable behind the CP, token requests get 401 CMGConnector_Unauthorized."""
    clean_site.set_fault("sts_unavailable", duration=30)
    response = site_client.ccm_sts(site_client.entra_token())
    assert (response.status_code, response.reason_phrase) == (401, "CMGConnector_Unauthorized")
    assert response.headers["x-ccm-error-code"] == "0x87d0027e"


def test_sts_error_is_cmgconnector_internal_server_error(clean_site: RunningSite, site_client: SiteClient) -> None:
    """When CCM_STS throws, the client sees 500 CMGConnector_InternalServerError."""
    clean_site.set_fault("sts_error", duration=30)
    response = site_client.ccm_sts(site_client.entra_token())
    assert (response.status_code, response.reason_phrase) == (500, "CMGConnector_InternalServerError")


def test_ccm_token_expired_refuses_old_tokens_but_not_renewed_ones(clean_site: RunningSite,
                                                                   site_client: SiteClient) -> None:
    """Tokens issued before ccm_token_expired get 401 CMGService_Invalid_Token; a renewed token works."""
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    site_client.register(entra)
    old = site_client.ccm_token(entra)
    smsid = jwt.decode(old, options={"verify_signature": False})["smsid"]
    # No waiting: a CCM token's iat has millisecond precision, so tokens issued just before and just after the fault
    # started are told apart.
    clean_site.set_fault("ccm_token_expired", duration=30)
    refused = site_client.policy(old, smsid)
    assert (refused.status_code, refused.reason_phrase) == (401, "CMGService_Invalid_Token")
    renewed = site_client.ccm_token(entra)
    assert site_client.policy(renewed, smsid).status_code == 200


def test_ccm_token_lifetime_shortens_new_tokens(clean_site: RunningSite, site_client: SiteClient) -> None:
    """ccm_token_lifetime makes CCM_STS issue tokens that live the given real seconds."""
    clean_site.set_fault("ccm_token_lifetime", duration=30, params={"seconds": 5})
    claims = jwt.decode(site_client.ccm_token(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(5, abs=1)


@pytest.mark.parametrize("role", ["cmg", "cp", "mp"])
def test_latency_slows_but_does_not_fail(clean_site: RunningSite, site_client: SiteClient, role: str) -> None:
    """latency at any proxy role delays the answer and the request still succeeds."""
    token, smsid = _registered(site_client)
    clean_site.set_fault("latency", role=role, duration=30, params={"mean_ms": 400, "jitter_ms": 0})
    response, elapsed = _timed(lambda: site_client.policy(token, smsid))
    assert response.status_code == 200
    assert elapsed >= 0.35


def test_http_error_answers_with_the_given_status_text(clean_site: RunningSite, site_client: SiteClient) -> None:
    """http_error answers with its status and status text as the reason phrase."""
    clean_site.set_fault("http_error", duration=30, params={"status": 502, "status_text": "Chaos_Bad_Gateway"})
    response = site_client.aad_auth_info()
    assert (response.status_code, response.reason_phrase) == (502, "Chaos_Bad_Gateway")


def test_reset_resets_the_connection(clean_site: RunningSite, site_client: SiteClient) -> None:
    """reset drops the TCP connection without an HTTP answer."""
    clean_site.set_fault("reset", duration=30)
    with pytest.raises(httpx.TransportError):
        site_client.aad_auth_info()


def test_cp_disconnected_is_a_503_naming_the_connection_point(clean_site: RunningSite,
                                                              site_client: SiteClient) -> None:
    """With no connection point, requests the CMG must forward get 503."""
    clean_site.set_fault("cp_disconnected", duration=30)
    response = site_client.ccm_sts(site_client.entra_token())
    assert response.status_code == 503
    assert "Connection_Point" in response.reason_phrase


def test_mp_slow_delays_mp_requests(clean_site: RunningSite, site_client: SiteClient) -> None:
    """mp_slow delays requests that reach the MP."""
    token, smsid = _registered(site_client)
    clean_site.set_fault("mp_slow", duration=30, params={"latency_ms": 400})
    response, elapsed = _timed(lambda: site_client.policy(token, smsid))
    assert response.status_code == 200
    assert elapsed >= 0.35


def test_mp_down_fails_mp_requests(clean_site: RunningSite, site_client: SiteClient) -> None:
    """mp_down makes MP-bound requests fail with a 5xx while the CMG itself still answers."""
    token, smsid = _registered(site_client)
    clean_site.set_fault("mp_down", duration=30)
    assert site_client.policy(token, smsid).status_code == 503
    assert site_client.aad_auth_info().status_code == 200


def test_bandwidth_slows_content_downloads(clean_site: RunningSite, site_client: SiteClient) -> None:
    """bandwidth throttles responses: 64 KiB of content from the CMG's storage at 64 KiB/s takes about a second."""
    token = site_client.ccm_token()
    url = site_client.cmg_url + "/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001"
    content = site_client.http.get(url, headers={"Authorization": f"Bearer {token}"})
    storage_url = ContentXml.from_xml(content.text).url
    clean_site.set_fault("bandwidth", role="storage", duration=30, params={"kib_per_s": 64})
    response, elapsed = _timed(lambda: site_client.http.get(storage_url))
    assert response.status_code == 200
    assert len(response.content) == 64 * 1024
    assert elapsed >= 0.8


def test_over_capacity_adds_latency_without_refusals(clean_site: RunningSite, site_client: SiteClient) -> None:
    """Above capacity the CMG still answers, later; no refusals."""
    devices = [_registered(site_client) for _ in range(3)]
    clean_site.set_fault("over_capacity", duration=30,
                         params={"capacity_clients": 1, "ms_per_excess_client": 200, "window_s": 60})
    for token, smsid in devices:
        assert site_client.policy(token, smsid).status_code == 200
    token, smsid = devices[0]
    response, elapsed = _timed(lambda: site_client.policy(token, smsid))
    assert response.status_code == 200
    assert elapsed >= 0.35


def test_injections_are_counted(clean_site: RunningSite, site_client: SiteClient) -> None:
    """The control API and /metrics count each injection per fault."""
    clean_site.set_fault("http_error", duration=30, params={"status": 503})
    for _ in range(3):
        site_client.aad_auth_info()
    listing = clean_site._control("GET", "", None)
    assert listing["injections"]["http_error"] >= 3
    metrics = httpx.get(clean_site.manifest.metrics_url("cmg")).text
    assert 'cmg_fault_injections_total{fault="http_error",role="cmg"}' in metrics


def test_every_server_side_fault_has_an_effect_test() -> None:
    """This module names a test for every fault of the catalogue (the Entra token faults live in the edge tests, the
    storage faults in test_storage, the bulk token faults in test_bulk_token)."""
    here = open(__file__).read()
    edge = open(__file__.replace("test_site_faults.py", "test_cmg_edge.py")).read()
    edge += open(__file__.replace("test_site_faults.py", "test_storage.py")).read()  # the storage faults
    edge += open(__file__.replace("test_site_faults.py", "test_bulk_token.py")).read()  # the bulk token faults
    missing = [name for name in CATALOGUE if f'"{name}"' not in here + edge]
    assert missing == []


def test_faults_end_by_themselves(clean_site: RunningSite, site_client: SiteClient) -> None:
    """A fault with a short duration is gone once it has run out."""
    fault = clean_site.set_fault("http_error", duration=1, params={"status": 503})
    assert site_client.aad_auth_info().status_code == 503
    # Poll against a deadline rather than sleep a fixed time: on a loaded machine the end may be seen late, never early.
    deadline = time.monotonic() + 15
    while (status := site_client.aad_auth_info().status_code) == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200
    assert clean_site.site.clock() >= fault["ends_at"]


def test_bad_fault_requests_are_refused_and_keep_active_faults(clean_site: RunningSite) -> None:
    """An unknown fault or a bad parameter is a 4xx naming it, and what was set stays set."""
    import urllib.error

    clean_site.set_fault("latency", duration=30, params={"mean_ms": 10})
    with pytest.raises(urllib.error.HTTPError) as refused:
        clean_site.set_fault("no_such_fault", duration=30)
    assert refused.value.code == 404
    with pytest.raises(urllib.error.HTTPError) as bad:
        clean_site.set_fault("latency", duration=-5)
    assert bad.value.code == 400
    names = [fault["name"] for fault in clean_site._control("GET", "", None)["active"]]
    assert "latency" in names




def test_metrics_show_errors_by_status_text_active_faults_crl_fetches_and_entra_tokens(
        clean_site: RunningSite, site_client: SiteClient) -> None:
    """The site's /metrics name error answers by status text, mark active faults, and count CRL and Entra work."""
    site_client.policy("not-a-token", POLICY_CLIENT)
    site_client.entra_token()
    _crl(site_client)
    clean_site.set_fault("mp_slow", duration=30, params={"latency_ms": 1})
    metrics = httpx.get(clean_site.manifest.metrics_url("cmg")).text
    assert 'status_text="CMGService_Invalid_Token"' in metrics
    assert 'cmg_faults_active{fault="mp_slow",role="mp"} 1.0' in metrics
    assert 'cmg_crl_fetches_total{result="served",role="crl"}' in metrics
    assert 'cmg_tokens_issued_total{kind="entra",role="entra"}' in metrics


def test_a_site_with_metrics_off_serves_without_recording(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """metrics_enabled=False swaps the instrumentation for no-ops: the site works and records no request series."""
    from mock_site.testing import running_site

    with running_site(tmp_path, metrics_enabled=False) as quiet, SiteClient(quiet.manifest) as client:
        assert client.ccm_token()
        metrics = httpx.get(quiet.manifest.metrics_url("cmg")).text
    assert "cmg_requests_total{" not in metrics
    assert "cmg_faults_active" in metrics  # the site-level gauge stays


@pytest.mark.parametrize(("fault", "reason"), [("policy_signature_mismatch", "MP_Signature_Invalid"),
                                               ("client_unknown", "MP_Client_Not_Registered")])
def test_signature_faults_refuse_policy_but_not_registration(clean_site: RunningSite, site_client: SiteClient,
                                                             fault: str, reason: str) -> None:
    """While on, signed policy requests get 403 with the fault's reason; registration still works; then policy again."""
    token, smsid = _registered(site_client)
    clean_site.set_fault(fault, duration=30)
    refused = site_client.policy(token, smsid)
    assert (refused.status_code, refused.reason_phrase) == (403, reason)
    assert site_client.register(site_client.entra_token(device_id=str(uuid.uuid4()))).status_code == 200
    clean_site.clear_fault(fault)
    assert site_client.policy(token, smsid).status_code == 200
