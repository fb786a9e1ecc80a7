"""Rendering the HAProxy configuration (what goes in, what is refused, that HAProxy accepts it) and what it forwards,
seen from an echo connection point."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from harness.cli import main
from harness.proxy import ProxyConfigError, RenderedHaproxy, process_for, render
from harness.proxy.haproxy import CCM_SIGNING_KEY_NAME, SERVER_PEM_NAME
from harness.proxy.nginx import NAIVE, VALIDATING
from harness.proxy.site import free_port
from mock_site.manifest import SiteManifest
from tests.proxy.conftest import ROLE_ID, EchoSite, HaproxyStarter, raw_request

SERVER_AUTH = f"/CCM_Proxy_ServerAuth/{ROLE_ID}"
MUTUAL_AUTH = f"/CCM_Proxy_MutualAuth/{ROLE_ID}"


@dataclass(frozen=True)
class KeyedSite:
    """The echo site's manifest with a CCM signing certificate, and the Entra JWKS the validating variant reads."""

    manifest: SiteManifest
    entra_jwks: dict[str, Any]


@pytest.fixture(scope="module")
def keyed_site(echo_site: EchoSite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyedSite]:
    """The echo site's manifest plus what the validating variant needs: a CCM signing certificate and Entra JWKS."""
    directory = tmp_path_factory.mktemp("keys")
    ccm = echo_site.ca.issue_cert("ccm-token-signing.test", key_type=trustme.KeyType.RSA)
    ccm.cert_chain_pems[0].write_to_path(str(directory / "ccm-signing.pem"))
    entra = [echo_site.ca.issue_cert(f"entra-{i}.test", key_type=trustme.KeyType.RSA) for i in range(2)]
    jwks = {"keys": [{"kid": f"k{i}", "kty": "RSA",
                      "x5c": [base64.b64encode(_der(leaf.cert_chain_pems[0].bytes())).decode()]}
                     for i, leaf in enumerate(entra)]}
    yield KeyedSite(echo_site.manifest.replace(ccm_signing_cert_file=directory / "ccm-signing.pem",
                                               hierarchy_id="8ed3174b-e814-41b5-b51c-fb368f0d4003"), jwks)


def _der(pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)


def _render(keyed: KeyedSite, variant: str, out: Path) -> RenderedHaproxy:
    manifest, jwks = keyed.manifest, keyed.entra_jwks
    if variant == VALIDATING:
        from harness.proxy import haproxy

        return haproxy.render(manifest, variant=variant, out_dir=out, entra_jwks=jwks)
    rendered = render(manifest, variant=variant, out_dir=out, proxy="haproxy")
    assert isinstance(rendered, RenderedHaproxy)
    return rendered


def test_only_the_validating_variant_verifies_tokens(keyed_site: KeyedSite, tmp_path: Path) -> None:
    """jwt_verify with the CCM key and each Entra key in the validating variant, none in the naive one."""
    naive = _render(keyed_site, NAIVE, tmp_path / "naive").config_file.read_text()
    validating = _render(keyed_site, VALIDATING, tmp_path / "validating")
    text = validating.config_file.read_text()
    assert "jwt_verify" not in naive
    assert text.count("jwt_verify(") == 3
    assert "jwt_header_query('$.alg')" in text and "jwt_payload_query('$.exp','int')" in text
    for key in [validating.directory / CCM_SIGNING_KEY_NAME, *validating.directory.glob("entra-signing-key-*.pem")]:
        assert key.read_text().startswith("-----BEGIN PUBLIC KEY-----")  # what HAProxy 2.6 reads, not a certificate


def test_the_server_certificate_file_is_private(keyed_site: KeyedSite, tmp_path: Path) -> None:
    """The CMG certificate and its key go into one file HAProxy reads, readable by its owner only."""
    rendered = _render(keyed_site, NAIVE, tmp_path / "naive")
    pem = rendered.directory / SERVER_PEM_NAME
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert "PRIVATE KEY" in pem.read_text() and "CERTIFICATE" in pem.read_text()


def test_a_missing_ccm_signing_certificate_is_named(keyed_site: KeyedSite, tmp_path: Path) -> None:
    keyed = KeyedSite(keyed_site.manifest.replace(ccm_signing_cert_file=tmp_path / "absent.pem"), keyed_site.entra_jwks)
    with pytest.raises(ProxyConfigError, match="absent.pem"):
        _render(keyed, VALIDATING, tmp_path / "validating")


def test_an_unknown_proxy_is_named(keyed_site: KeyedSite, tmp_path: Path) -> None:
    with pytest.raises(ProxyConfigError, match="'envoy'"):
        render(keyed_site.manifest, variant=NAIVE, out_dir=tmp_path, proxy="envoy")


@pytest.mark.haproxy
@pytest.mark.parametrize("variant", [NAIVE, VALIDATING])
def test_haproxy_accepts_both_variants(keyed_site: KeyedSite, haproxy_binary: str, tmp_path: Path,
                                       variant: str) -> None:
    rendered = _render(keyed_site, variant, tmp_path / variant)
    process_for(rendered, binary=haproxy_binary).check()


def test_proxy_config_renders_haproxy(keyed_site: KeyedSite, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    """``cmg-harness proxy-config --proxy haproxy`` writes haproxy.cfg and prints the HAProxy command line."""
    site_file = tmp_path / "site.json"
    keyed_site.manifest.write(site_file)
    code = main(["proxy-config", "--proxy", "haproxy", "--site", str(site_file), "--variant", "naive",
                 "--out", str(tmp_path / "haproxy")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"-f {tmp_path / 'haproxy' / 'haproxy.cfg'}" in out and out.strip().endswith("-db")
    assert json.loads((tmp_path / "haproxy" / "proxy.json").read_text())["proxy"] == "haproxy"


# --- what the naive variant forwards ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def naive(echo_site: EchoSite, start_haproxy: HaproxyStarter) -> RenderedHaproxy:
    return start_haproxy(echo_site.manifest, NAIVE)


def _send(echo_site: EchoSite, proxy: RenderedHaproxy, method: str, target: str, **kwargs: Any) -> Any:
    return raw_request(proxy.url, echo_site.manifest.ca_file, method, target, **kwargs)


@pytest.mark.haproxy
def test_ccm_post_reaches_the_connection_point_with_its_body_token_and_public_uri(
        echo_site: EchoSite, naive: RenderedHaproxy) -> None:
    """CCM_POST, its body and the token cross unchanged; X-CMG-Request-URI names the proxy and the path."""
    answer = _send(echo_site, naive, "CCM_POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request",
                   headers={"Authorization": "Bearer forged"}, body=b"--message\r\n")
    seen = answer.json()
    assert (answer.status, seen["method"], seen["body"]) == (200, "CCM_POST", "--message\r\n")
    assert seen["headers"]["authorization"] == "Bearer forged"
    assert seen["headers"]["x-cmg-request-uri"] == f"{naive.url}{SERVER_AUTH}/ccm_system_tokenauth/request"


@pytest.mark.haproxy
@pytest.mark.parametrize("path", [f"{SERVER_AUTH}/SMS_MP/.sms_aut?MPLIST", f"{MUTUAL_AUTH}/SMS_MP/.sms_aut?MPLIST"])
def test_a_client_cannot_claim_a_certificate_by_sending_the_header(echo_site: EchoSite, naive: RenderedHaproxy,
                                                                    path: str) -> None:
    answer = _send(echo_site, naive, "GET", path, headers={"X-CMG-Client-Cert": "Zm9yZ2Vk", "Authorization": "Bearer x"})
    assert answer.status == 200
    assert "x-cmg-client-cert" not in answer.json()["headers"]


@pytest.mark.haproxy
@pytest.mark.parametrize("key_type", [trustme.KeyType.ECDSA, trustme.KeyType.RSA])
def test_a_verified_client_certificate_goes_on_as_base64_der(echo_site: EchoSite, naive: RenderedHaproxy,
                                                             key_type: trustme.KeyType) -> None:
    cert, key, der = echo_site.client_cert_files(f"haproxy-device-{key_type.name.lower()}", key_type)
    answer = _send(echo_site, naive, "GET", f"{MUTUAL_AUTH}/SMS_MP/.sms_aut?MPLIST", cert=(cert, key),
                   headers={"X-CMG-Client-Cert": "Zm9yZ2Vk"})
    assert answer.json()["headers"]["x-cmg-client-cert"] == base64.b64encode(der).decode()


@pytest.mark.haproxy
@pytest.mark.parametrize("method,path,body,status,text", [
    ("POST", f"{SERVER_AUTH}/ccm_system_tokenauth/request", b"x", 405, "CMGService_Method_Not_Allowed"),
    ("GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab", b"x", 413, "CMGService_Request_Too_Large"),
])
def test_methods_and_body_sizes_are_held_per_endpoint(echo_site: EchoSite, naive: RenderedHaproxy, method: str,
                                                      path: str, body: bytes, status: int, text: str) -> None:
    answer = _send(echo_site, naive, method, path, body=body, headers={"Authorization": "Bearer x"})
    assert (answer.status, answer.reason, answer.headers.get("x-cmg-status-text")) == (status, text, text)


@pytest.mark.haproxy
@pytest.mark.parametrize("path,limit", [(f"{SERVER_AUTH}/CCM_STS", 64 * 1024),
                                        (f"{SERVER_AUTH}/ccm_system/request", 1024 * 1024)])
def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent(echo_site: EchoSite, naive: RenderedHaproxy,
                                                                     path: str, limit: int) -> None:
    """HAProxy judges the declared Content-Length and answers 413 at once (it does not read the body first)."""
    method = "POST" if path.endswith("CCM_STS") else "CCM_POST"
    context = ssl.create_default_context(cafile=echo_site.manifest.ca_file)
    with socket.create_connection((naive.host, naive.port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=naive.host) as sock:
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\n"
                     f"Content-Length: {limit + 1}\r\n\r\n".encode())
        status_line = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status_line == b"HTTP/1.1 413 CMGService_Request_Too_Large"


@pytest.mark.haproxy
def test_a_body_at_the_limit_is_forwarded(echo_site: EchoSite, naive: RenderedHaproxy) -> None:
    answer = _send(echo_site, naive, "POST", f"{SERVER_AUTH}/CCM_STS", body=b"x" * (64 * 1024),
                   headers={"Authorization": "Bearer x"})
    assert (answer.status, len(answer.json()["body"])) == (200, 64 * 1024)


@pytest.mark.haproxy
def test_an_unreachable_connection_point_is_a_503(echo_site: EchoSite, start_haproxy: HaproxyStarter) -> None:
    proxy = start_haproxy(echo_site.manifest, NAIVE, cp_urls=(f"https://127.0.0.1:{free_port('127.0.0.1')}",))
    answer = _send(echo_site, proxy, "GET", f"{SERVER_AUTH}/CCM_Client/ccmsetup.cab",
                   headers={"Authorization": "Bearer x"})
    assert (answer.status, answer.reason) == (503, "CMGService_No_Connection_Point_Available")


@pytest.mark.haproxy
@pytest.mark.parametrize(("query", "status"), [("SITESIGNCERT", 200), ("mplist2&PS1", 200), ("MPCERT", 200),
                                               ("MPLIST2", 404), ("MPKEYINFO", 404)])
def test_the_sms_aut_verbs_of_the_url_map_pass_and_no_others(echo_site: EchoSite, naive: RenderedHaproxy, query: str,
                                                            status: int) -> None:
    """HAProxy publishes the same .sms_aut verbs as the mock CMG's URL map."""
    answer = _send(echo_site, naive, "GET", f"{SERVER_AUTH}/SMS_MP/.sms_aut?{query}", headers={"Authorization": "Bearer x"})
    assert answer.status == status
