"""Joining split roles: which URL a joined manifest gives for each role, and the probe that checks every link."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from mock_site.joining import JoinError, LinkProbe, ProbeAnswer, join_links
from mock_site.manifest import MANIFEST_NAME
from mock_site.testing import example_manifest


def _written(directory: Path, name: str, **changes: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return example_manifest(directory, **changes).write(directory / name)


def test_a_joined_manifest_gives_each_role_it_serves(tmp_path: Path) -> None:
    """The CRL file (not its base URL), Entra ID, the MP and every connection point, as the joiner needs them."""
    back = _written(tmp_path, "site-crl-entra-mp.json", roles=("crl", "entra", "mp"))
    middle = _written(tmp_path, "site-cp.json", roles=("cp",),
                      cp_urls=("https://127.0.0.1:7001", "https://127.0.0.1:7002"))
    links = join_links([back, middle], {}, roles=["cmg"])
    assert links == {"crl": "http://127.0.0.1:9101/pki/site.crl", "entra": "https://127.0.0.1:9446",
                     "mp": "https://127.0.0.1:9445", "cp": "https://127.0.0.1:7001,https://127.0.0.1:7002"}


def test_roles_run_here_are_not_linked_and_a_given_link_wins(tmp_path: Path) -> None:
    whole = _written(tmp_path, MANIFEST_NAME)
    links = join_links([whole], {"entra": "https://127.0.0.1:1"}, roles=["cmg", "cp"])
    assert set(links) == {"crl", "entra", "mp"} and links["entra"] == "https://127.0.0.1:1"


def test_connection_points_of_several_processes_add_up(tmp_path: Path) -> None:
    one = _written(tmp_path / "a", "site-cp.json", roles=("cp",), cp_urls=("https://127.0.0.1:7001",))
    two = _written(tmp_path / "b", "site-cp.json", roles=("cp",), cp_urls=("https://127.0.0.1:7002",))
    assert join_links([one, two], {}, roles=["cmg"])["cp"] == "https://127.0.0.1:7001,https://127.0.0.1:7002"


def test_two_processes_serving_one_role_are_refused_by_name(tmp_path: Path) -> None:
    one = _written(tmp_path / "a", "site-mp.json", roles=("mp",))
    two = _written(tmp_path / "b", "site-mp.json", roles=("mp",))
    with pytest.raises(JoinError, match=f"--join '{two}': role mp is also served by '{one}'"):
        join_links([one, two], {}, roles=["cmg"])


def test_a_broken_joined_manifest_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "site-crl.json"
    data = example_manifest(tmp_path).to_dict()
    del data["crl_url"]
    path.write_text(json.dumps(data))
    with pytest.raises(JoinError, match=f"--join: site manifest '{path}': field 'crl_url' is missing"):
        join_links([path], {}, roles=["cmg"])


def test_a_joined_site_of_another_ca_is_refused(tmp_path: Path) -> None:
    """Roles trust each other through one CA: a joined site with another CA file (readable here) is refused."""
    theirs = _written(tmp_path / "them", "site-crl.json", roles=("crl",))
    (tmp_path / "them" / "pki").mkdir()
    (tmp_path / "them" / "pki" / "ca.pem").write_bytes(trustme.CA().cert_pem.bytes())
    ours = tmp_path / "us" / "pki" / "ca.pem"
    ours.parent.mkdir(parents=True)
    ours.write_bytes(trustme.CA().cert_pem.bytes())
    with pytest.raises(JoinError, match="that site's CA .* is not this one's"):
        join_links([theirs], {}, roles=["cmg"], ca_file=ours)


# --- the probe --------------------------------------------------------------------------------------------------------


class _Fake:
    """Answers per URL, recording what was fetched."""

    def __init__(self, answers: dict[str, ProbeAnswer | OSError]) -> None:
        self.answers = answers
        self.fetched: list[str] = []

    def __call__(self, url: str, context: ssl.SSLContext | None) -> ProbeAnswer:
        self.fetched.append(url)
        answer = self.answers.get(url, ProbeAnswer(404, "", b"Not Found"))
        if isinstance(answer, OSError):
            raise answer
        return answer


def _crl_of(ca: trustme.CA) -> bytes:
    import datetime as dt

    from cryptography.hazmat.primitives import hashes, serialization

    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), password=None)
    cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    now = dt.datetime.now(dt.UTC)
    builder = x509.CertificateRevocationListBuilder().issuer_name(cert.subject).last_update(now) \
        .next_update(now + dt.timedelta(days=1))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _probe(ca: trustme.CA, answers: dict[str, ProbeAnswer | OSError]) -> tuple[LinkProbe, _Fake]:
    fake = _Fake(answers)
    context = ssl.create_default_context()
    return LinkProbe(ca=x509.load_pem_x509_certificate(ca.cert_pem.bytes()), server_context=context,
                     mp_context=context, fetch=fake), fake


def test_the_crl_file_of_this_ca_passes(ca: trustme.CA) -> None:
    url = "http://127.0.0.1:9101/pki/site.crl"
    probe, fake = _probe(ca, {url: ProbeAnswer(200, "", _crl_of(ca))})
    probe.check("crl", url)
    assert fake.fetched == [url]


def test_the_crl_points_base_url_is_refused_with_a_hint(ca: trustme.CA) -> None:
    probe, _ = _probe(ca, {})
    with pytest.raises(JoinError, match=r"--link crl=http://127.0.0.1:9101: answered 404 \(9 bytes\), not a CRL "
                                        r"\(give the CRL file's URL"):
        probe.check("crl", "http://127.0.0.1:9101")


def test_a_crl_of_another_ca_is_refused(ca: trustme.CA) -> None:
    url = "http://127.0.0.1:9101/pki/site.crl"
    probe, _ = _probe(ca, {url: ProbeAnswer(200, "", _crl_of(trustme.CA()))})
    with pytest.raises(JoinError, match="a CRL of another CA"):
        probe.check("crl", url)


def test_entra_must_serve_its_signing_keys(ca: trustme.CA) -> None:
    keys = "https://127.0.0.1:9446/common/discovery/keys"
    good, _ = _probe(ca, {keys: ProbeAnswer(200, "", b'{"keys": [{"kid": "k"}]}')})
    good.check("entra", "https://127.0.0.1:9446")
    bad, _ = _probe(ca, {})
    with pytest.raises(JoinError, match="--link entra=https://127.0.0.1:9446: /common/discovery/keys answered 404"):
        bad.check("entra", "https://127.0.0.1:9446")


def test_the_mp_must_refuse_a_tokenless_request_as_an_mp(ca: trustme.CA) -> None:
    url = "https://127.0.0.1:9445/CCM_Client/ccmsetup.cab"
    good, _ = _probe(ca, {url: ProbeAnswer(401, "MP_Invalid_Token", b"MP_Invalid_Token: no token")})
    good.check("mp", "https://127.0.0.1:9445")
    cp, _ = _probe(ca, {url: ProbeAnswer(404, "CMGService_Invalid_Path", b"")})
    with pytest.raises(JoinError, match="answered 404 CMGService_Invalid_Path .*not a management point"):
        cp.check("mp", "https://127.0.0.1:9445")


@pytest.mark.parametrize(("role", "url", "named"), [
    ("mp", "https://127.0.0.1:9445/CCM_Proxy_ServerAuth", "base URL https://host:port (no path)"),
    ("cp", "http://127.0.0.1:9444", "base URL"),
    ("cmg", "https://127.0.0.1:x", "port that is not a number"),
    ("crl", "ftp://127.0.0.1/site.crl", "http(s)://host[:port]/path"),
])
def test_a_link_of_the_wrong_shape_is_refused_without_a_request(ca: trustme.CA, role: str, url: str,
                                                                named: str) -> None:
    probe, fake = _probe(ca, {})
    with pytest.raises(JoinError, match=f"--link {role}=") as caught:
        probe.check(role, url)
    assert named in str(caught.value) and fake.fetched == []


def test_nothing_answering_says_start_that_role_first(ca: trustme.CA) -> None:
    probe, _ = _probe(ca, {"https://127.0.0.1:9444/": ConnectionRefusedError(111, "Connection refused")})
    with pytest.raises(JoinError, match="nothing answers at https://127.0.0.1:9444/ .*start that role first"):
        probe.check("cp", "https://127.0.0.1:9444")


def test_a_tls_failure_says_which_ca(ca: trustme.CA) -> None:
    probe, _ = _probe(ca, {"https://127.0.0.1:9444/": ssl.SSLCertVerificationError("certificate verify failed")})
    with pytest.raises(JoinError, match="TLS with https://127.0.0.1:9444/ failed .*--state-dir"):
        probe.check("cp", "https://127.0.0.1:9444")
