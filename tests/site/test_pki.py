"""Specification of the site's test PKI: persistence, certificates, revocation and the CRL."""

from __future__ import annotations

import base64
import contextlib
import socket
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cmg_protocol.clock import FakeClock
from mock_site.pki import CertBundle, PkiError, SitePki, rsa_key_thumbprint

CRL_URL = "http://127.0.0.1:8081/pki/site.crl"


@pytest.fixture
def clock() -> FakeClock:
    # OpenSSL checks certificate and CRL times against the machine's clock, so the fake one starts at real time.
    return FakeClock(time.time())


@pytest.fixture
def pki(tmp_path: Path, clock: FakeClock) -> SitePki:
    return SitePki.load_or_create(tmp_path / "pki", clock=clock)


@contextlib.contextmanager
def tls_server(bundle: CertBundle, *, client_ca: Path | None = None) -> Iterator[tuple[str, int]]:
    """Serve TLS with ``bundle`` on a loopback port, one handshake at a time, answering b"ok" to each client."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    bundle.configure_server_context(ctx)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            conn, _ = listener.accept()
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(5)
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.sendall(b"ok")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = listener.getsockname()[:2]
    try:
        yield address
    finally:
        stop.set()
        socket.create_connection(address).close()  # wakes the blocked accept() so the thread sees the stop
        thread.join()
        listener.close()


def handshake(address: tuple[str, int], ctx: ssl.SSLContext) -> bytes:
    """Connect with ``ctx``, complete the TLS handshake and read the server's greeting."""
    with socket.create_connection(address, timeout=5) as raw, ctx.wrap_socket(raw, server_hostname=address[0]) as tls:
        return tls.recv(2)


def crl_checking_context(pki: SitePki, crl_pem: bytes, tmp_path: Path) -> ssl.SSLContext:
    """A client context that trusts the CA and checks the leaf against ``crl_pem``."""
    crl_file = tmp_path / "loaded.crl.pem"
    crl_file.write_bytes(crl_pem)
    ctx = pki.trust_context_server()
    ctx.load_verify_locations(cafile=crl_file)
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx


# ------------------------------------------------------------------ persistence
def test_reload_keeps_the_same_root_ca(tmp_path: Path, clock: FakeClock) -> None:
    """A second load_or_create on the same folder returns the CA the first one created."""
    first = SitePki.load_or_create(tmp_path, clock=clock)
    second = SitePki.load_or_create(tmp_path, clock=clock)
    assert second.ca_pem == first.ca_pem
    assert second.ca_file.read_bytes() == first.ca_pem


def test_new_folder_gets_a_new_root_ca(tmp_path: Path, clock: FakeClock) -> None:
    """Two sites in different folders do not share a CA."""
    assert SitePki.load_or_create(tmp_path / "a", clock=clock).ca_pem != (
        SitePki.load_or_create(tmp_path / "b", clock=clock).ca_pem
    )


def test_reload_keeps_the_ccm_signing_key(tmp_path: Path, clock: FakeClock) -> None:
    """The CCM token signing key and its kid survive a restart, so issued CCM tokens stay valid."""
    first = SitePki.load_or_create(tmp_path, clock=clock)
    second = SitePki.load_or_create(tmp_path, clock=clock)
    assert second.ccm_signing_kid == first.ccm_signing_kid
    assert second.ccm_public_keys()[first.ccm_signing_kid].public_numbers() == (
        first.ccm_signing_key.public_key().public_numbers()
    )


def test_reload_keeps_the_cmg_certificate(tmp_path: Path, clock: FakeClock) -> None:
    """The CMG certificate is persisted: the same CDP URL after a restart gives the same serial."""
    serial = SitePki.load_or_create(tmp_path, clock=clock).cmg_server_cert(crl_url=CRL_URL).serial
    assert SitePki.load_or_create(tmp_path, clock=clock).cmg_server_cert(crl_url=CRL_URL).serial == serial


def test_revocation_survives_reload(tmp_path: Path, clock: FakeClock) -> None:
    """A revoked serial is still listed in the CRL of a reloaded PKI."""
    first = SitePki.load_or_create(tmp_path, clock=clock)
    serial = first.cmg_server_cert(crl_url=CRL_URL).serial
    first.revoke(serial)
    second = SitePki.load_or_create(tmp_path, clock=clock)
    crl = x509.load_pem_x509_crl(second.crl_pem())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None


def test_crl_number_keeps_rising_across_reload(tmp_path: Path, clock: FakeClock) -> None:
    """The CRL number of a reloaded PKI is higher than any it published before."""
    first = SitePki.load_or_create(tmp_path, clock=clock)
    before = x509.load_pem_x509_crl(first.crl_pem()).extensions.get_extension_for_class(x509.CRLNumber).value
    second = SitePki.load_or_create(tmp_path, clock=clock)
    after = x509.load_pem_x509_crl(second.crl_pem()).extensions.get_extension_for_class(x509.CRLNumber).value
    assert after.crl_number > before.crl_number


def test_private_keys_are_owner_only(pki: SitePki) -> None:
    """Key files on disk are readable by their owner alone."""
    pki.cmg_server_cert(crl_url=CRL_URL)
    for key_file in ("ca.key", "ccm-signing.key", "cmg.key"):
        assert stat.S_IMODE((pki.pki_dir / key_file).stat().st_mode) == 0o600


# ----------------------------------------------------------------- certificates
def test_cmg_certificate_names_the_crl_distribution_point(pki: SitePki) -> None:
    """The CMG server certificate carries the CDP URL it was issued for."""
    cert = pki.cmg_server_cert(crl_url=CRL_URL).certificate
    points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [name.value for point in points for name in point.full_name] == [CRL_URL]


def test_cmg_certificate_is_issued_again_when_the_cdp_moves(pki: SitePki) -> None:
    """A new CDP URL (the port changed between runs) gives a new certificate naming it."""
    old = pki.cmg_server_cert(crl_url=CRL_URL)
    moved = "http://127.0.0.1:9999/pki/site.crl"
    new = pki.cmg_server_cert(crl_url=moved)
    assert new.serial != old.serial
    points = new.certificate.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == moved


def test_cmg_certificate_is_reused_for_the_same_request(pki: SitePki) -> None:
    """Asking twice for the same CMG certificate does not issue a second one."""
    assert pki.cmg_server_cert(crl_url=CRL_URL).serial == pki.cmg_server_cert(crl_url=CRL_URL).serial


def test_leaf_close_to_expiry_is_issued_again(pki: SitePki, clock: FakeClock) -> None:
    """Within 30 days of its end a persisted certificate is replaced by a fresh one."""
    old = pki.mp_server_cert()
    clock.advance(370 * 86400)
    new = pki.mp_server_cert()
    assert new.serial != old.serial
    assert new.certificate.not_valid_after_utc.timestamp() > clock() + 300 * 86400


@pytest.mark.parametrize(
    ("issue", "usage", "common_name"),
    [
        (lambda pki: pki.cmg_server_cert(crl_url=CRL_URL), ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.1"),
        (lambda pki: pki.mp_server_cert(("mp.contoso.test",)), ExtendedKeyUsageOID.SERVER_AUTH, "mp.contoso.test"),
        (lambda pki: pki.entra_server_cert(), ExtendedKeyUsageOID.SERVER_AUTH, "127.0.0.1"),
        (lambda pki: pki.cp_client_cert(), ExtendedKeyUsageOID.CLIENT_AUTH, "CMG connection point"),
        (lambda pki: pki.device_client_cert("WIN10-0042"), ExtendedKeyUsageOID.CLIENT_AUTH, "WIN10-0042"),
    ],
    ids=["cmg", "mp", "entra", "cp", "device"],
)
def test_role_certificates_have_their_usage_and_name(
    pki: SitePki, issue: Callable[[SitePki], CertBundle], usage: x509.ObjectIdentifier, common_name: str
) -> None:
    """Each role certificate is CA-signed, ECDSA, with the role's extended key usage and common name."""
    cert = issue(pki).certificate
    cert.verify_directly_issued_by(pki.ca_certificate)
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [usage]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == common_name
    assert cert.public_key().key_size == 256  # type: ignore[union-attr]


def test_server_certificate_lists_every_host(pki: SitePki) -> None:
    """IP addresses become IP SANs and names become DNS SANs."""
    cert = pki.entra_server_cert(("127.0.0.1", "localhost", "login.contoso.test")).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "login.contoso.test"]


def test_device_certificates_are_distinct_per_device(pki: SitePki) -> None:
    """Two devices get two certificates; one device asking again gets its own back."""
    first = pki.device_client_cert("DEVICE-1")
    assert pki.device_client_cert("DEVICE-2").serial != first.serial
    assert pki.device_client_cert("DEVICE-1").serial == first.serial


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "x" * 64, "-leading", "sp ace"])
def test_bad_device_name_is_refused(pki: SitePki, name: str) -> None:
    """A device name that could not be a computer name (or would escape the folder) raises PkiError naming it."""
    with pytest.raises(PkiError, match="device name"):
        pki.device_client_cert(name)


@pytest.mark.parametrize("hosts", [(), ("bad host",), ("under_score.test",), ("-x.test",)])
def test_bad_host_is_refused(pki: SitePki, hosts: tuple[str, ...]) -> None:
    """Server certificates need at least one valid host name or IP address."""
    with pytest.raises(PkiError, match="host"):
        pki.mp_server_cert(hosts)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/site.crl", "site.crl", "http:///site.crl"])
def test_bad_crl_url_is_refused(pki: SitePki, url: str) -> None:
    """The CDP must be an http(s) URL with a host."""
    with pytest.raises(PkiError, match="CRL distribution point"):
        pki.cmg_server_cert(crl_url=url)


def test_bundle_write_puts_chain_and_key_on_disk(pki: SitePki, tmp_path: Path) -> None:
    """write() stores the chain (leaf first, then the CA) and an owner-only key."""
    bundle = pki.cp_client_cert()
    cert_path, key_path = bundle.write(tmp_path / "out", "cp")
    chain = x509.load_pem_x509_certificates(cert_path.read_bytes())
    assert [c.serial_number for c in chain] == [bundle.serial, pki.ca_certificate.serial_number]
    assert key_path.read_bytes() == bundle.key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


# ------------------------------------------------------------- real handshakes
def test_cmg_certificate_verifies_in_a_tls_handshake(pki: SitePki) -> None:
    """A client trusting only the site CA completes a handshake with the CMG certificate."""
    with tls_server(pki.cmg_server_cert(crl_url=CRL_URL)) as address:
        assert handshake(address, pki.trust_context_server()) == b"ok"


def test_handshake_fails_without_the_root_ca(pki: SitePki, tmp_path: Path, clock: FakeClock) -> None:
    """A client trusting another CA refuses the CMG certificate (the root_ca_missing device)."""
    other = SitePki.load_or_create(tmp_path / "other", clock=clock)
    server = tls_server(pki.cmg_server_cert(crl_url=CRL_URL))
    with server as address, pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        handshake(address, other.trust_context_server())


def test_handshake_with_crl_check_succeeds_while_not_revoked(pki: SitePki, tmp_path: Path) -> None:
    """With VERIFY_CRL_CHECK_LEAF and the current CRL loaded, an unrevoked CMG certificate passes."""
    with tls_server(pki.cmg_server_cert(crl_url=CRL_URL)) as address:
        assert handshake(address, crl_checking_context(pki, pki.crl_pem(), tmp_path)) == b"ok"


def test_handshake_fails_after_revoke(pki: SitePki, tmp_path: Path) -> None:
    """Once the CMG serial is revoked, a CRL-checking client fails with 'certificate revoked'."""
    bundle = pki.cmg_server_cert(crl_url=CRL_URL)
    pki.revoke(bundle.serial)
    with tls_server(bundle) as address, pytest.raises(ssl.SSLCertVerificationError, match="certificate revoked"):
        handshake(address, crl_checking_context(pki, pki.crl_pem(), tmp_path))


def test_handshake_passes_again_after_unrevoke(pki: SitePki, tmp_path: Path) -> None:
    """unrevoke() takes the serial off the next CRL."""
    bundle = pki.cmg_server_cert(crl_url=CRL_URL)
    pki.revoke(bundle.serial)
    assert pki.unrevoke(bundle.serial) is True
    with tls_server(bundle) as address:
        assert handshake(address, crl_checking_context(pki, pki.crl_pem(), tmp_path)) == b"ok"


def test_handshake_fails_with_an_expired_crl(pki: SitePki, tmp_path: Path) -> None:
    """A CRL past its nextUpdate fails the revocation check even though nothing is revoked."""
    server = tls_server(pki.cmg_server_cert(crl_url=CRL_URL))
    with server as address, pytest.raises(ssl.SSLCertVerificationError, match="CRL has expired"):
        handshake(address, crl_checking_context(pki, pki.crl_pem(expired=True), tmp_path))


def test_trust_context_with_crl_check_loads_the_current_crl(pki: SitePki) -> None:
    """trust_context_server(crl_check=True) rejects a revoked CMG certificate on its own."""
    bundle = pki.cmg_server_cert(crl_url=CRL_URL)
    pki.revoke(bundle.serial)
    with tls_server(bundle) as address, pytest.raises(ssl.SSLCertVerificationError, match="certificate revoked"):
        handshake(address, pki.trust_context_server(crl_check=True))


@pytest.mark.parametrize("client", ["cp", "device"])
def test_client_certificate_passes_mutual_tls(pki: SitePki, client: str) -> None:
    """The CP and device client certificates are accepted by a server that requires CA-signed clients."""
    bundle = pki.cp_client_cert() if client == "cp" else pki.device_client_cert("WIN10-0001")
    ctx = pki.trust_context_server()
    bundle.configure_client_context(ctx)
    with tls_server(pki.mp_server_cert(), client_ca=pki.ca_file) as address:
        assert handshake(address, ctx) == b"ok"


def test_unpersisted_bundle_loads_into_a_context(pki: SitePki) -> None:
    """A bundle without files on disk still configures a server context."""
    persisted = pki.cmg_server_cert(crl_url=CRL_URL)
    loose = CertBundle(persisted.cert_pem, persisted.key_pem, persisted.chain_pem, persisted.serial)
    with tls_server(loose) as address:
        assert handshake(address, pki.trust_context_server()) == b"ok"


# ------------------------------------------------------------------------- CRL
def test_crl_is_signed_by_the_ca_with_now_and_next_update(pki: SitePki, clock: FakeClock) -> None:
    """lastUpdate is now, nextUpdate is now plus the interval, and the CA's signature verifies."""
    crl = x509.load_pem_x509_crl(pki.crl_pem(next_update_in=3600))
    assert crl.is_signature_valid(pki.ca_certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == pki.ca_certificate.subject
    assert crl.last_update_utc.timestamp() == pytest.approx(clock(), abs=1)
    assert crl.next_update_utc is not None
    assert crl.next_update_utc.timestamp() == pytest.approx(clock() + 3600, abs=1)


def test_expired_crl_has_next_update_in_the_past(pki: SitePki, clock: FakeClock) -> None:
    """expired=True gives a CRL whose nextUpdate is before now (and after its lastUpdate)."""
    crl = x509.load_pem_x509_crl(pki.crl_pem(expired=True))
    assert crl.next_update_utc is not None
    assert crl.last_update_utc < crl.next_update_utc
    assert crl.next_update_utc.timestamp() < clock() - 300


def test_crl_lists_exactly_the_revoked_serials(pki: SitePki) -> None:
    """The CRL holds every revoked serial and nothing else."""
    pki.revoke(1234)
    pki.revoke(98765)
    crl = x509.load_pem_x509_crl(pki.crl_pem())
    assert sorted(entry.serial_number for entry in crl) == [1234, 98765]


def test_der_and_pem_are_the_same_crl(pki: SitePki) -> None:
    """crl_der() and crl_pem() serve one CRL in two encodings."""
    assert x509.load_der_x509_crl(pki.crl_der()) == x509.load_pem_x509_crl(pki.crl_pem())


def test_crl_is_cached_between_requests(pki: SitePki, clock: FakeClock) -> None:
    """Without a change the same signed bytes are served again."""
    first = pki.crl_der()
    clock.advance(60)
    assert pki.crl_der() == first


@pytest.mark.parametrize("change", ["revoke", "half_window", "expiry_mode"])
def test_crl_is_rebuilt_when_something_changed(pki: SitePki, clock: FakeClock, change: str) -> None:
    """A revocation, half the validity window passing, or the expiry mode switching gives a new CRL."""
    first = x509.load_der_x509_crl(pki.crl_der(next_update_in=1000))
    expired = False
    if change == "revoke":
        pki.revoke(777)
    elif change == "half_window":
        clock.advance(501)
    else:
        expired = True
    second = x509.load_der_x509_crl(pki.crl_der(next_update_in=1000, expired=expired))
    number = x509.CRLNumber
    assert (
        second.extensions.get_extension_for_class(number).value.crl_number
        > first.extensions.get_extension_for_class(number).value.crl_number
    )


@pytest.mark.parametrize("serial", [0, -5, "123", 1.5, True])
def test_bad_serial_is_refused(pki: SitePki, serial: object) -> None:
    """revoke() needs a positive integer serial."""
    with pytest.raises(PkiError, match="serial"):
        pki.revoke(serial)  # type: ignore[arg-type]


def test_unrevoke_of_an_unlisted_serial_says_so(pki: SitePki) -> None:
    """unrevoke() of a serial that was never revoked returns False and changes nothing."""
    assert pki.unrevoke(4242) is False
    assert pki.revoked_serials() == frozenset()


def test_bad_crl_interval_is_refused(pki: SitePki) -> None:
    """A CRL validity of zero or less raises PkiError naming it."""
    with pytest.raises(PkiError, match="nextUpdate interval"):
        pki.crl_pem(next_update_in=0)


# ------------------------------------------------------------ CCM signing key
def test_ccm_signing_key_is_rsa_2048_with_a_ca_signed_certificate(pki: SitePki) -> None:
    """The CCM token signing key is RSA-2048 and its certificate is issued by the site CA."""
    assert isinstance(pki.ccm_signing_key, rsa.RSAPrivateKey)
    assert pki.ccm_signing_key.key_size == 2048
    cert = x509.load_pem_x509_certificate(pki.ccm_signing_cert_pem)
    cert.verify_directly_issued_by(pki.ca_certificate)
    assert cert.public_key() == pki.ccm_signing_key.public_key()


def test_ccm_public_keys_are_keyed_by_the_signing_kid(pki: SitePki) -> None:
    """ccm_public_keys() maps the signing kid to the signing key's public half."""
    keys = pki.ccm_public_keys()
    assert list(keys) == [pki.ccm_signing_kid]
    assert keys[pki.ccm_signing_kid] == pki.ccm_signing_key.public_key()


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    """The thumbprint of the RFC 7638 section 3.1 example key is the one the RFC prints."""
    n = (
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
        "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZH"
        "zu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8"
        "awapJzKnqDKgw"
    )
    numbers = rsa.RSAPublicNumbers(65537, int.from_bytes(_b64url_decode(n), "big"))
    assert rsa_key_thumbprint(numbers.public_key()) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_trust_context_holds_only_the_site_ca(pki: SitePki) -> None:
    """The client context trusts the site root alone, not the machine's public roots."""
    (only,) = pki.trust_context_server().get_ca_certs(binary_form=True)
    assert x509.load_der_x509_certificate(only) == pki.ca_certificate
