"""Certificates the site CA issues: the bundle a role presents, what a leaf must say, and the checks on what is asked."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import re
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import NameOID

from mock_site.pki.files import private_pem, write_atomic

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
CONNECTION_POINT_COMMON_NAME = "CMG connection point"
#: The CMG's client identity towards its connection points. Device names cannot hold a space, so no device
#: certificate the site CA issues can carry this name (or the connection point's).
CMG_IDENTITY_COMMON_NAME = "CMG service identity"  # synthetic: not the public ConfigMgr format

DAY_SECONDS = 86400.0
#: Leaf certificates start a day early so that a slightly wrong clock on either side does not fail TLS.
BACKDATE_SECONDS = DAY_SECONDS
#: Leaf lifetime: the public-TLS maximum, long enough for any run.
LEAF_LIFETIME_SECONDS = 397 * DAY_SECONDS
#: A persisted leaf this close to its end is issued again instead of reused.
RENEW_BEFORE_SECONDS = 30 * DAY_SECONDS
#: The CCM token signing certificate outlives any site state directory.
CCM_SIGNING_LIFETIME_SECONDS = 10 * 365 * DAY_SECONDS
_DNS_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
#: Device names are NetBIOS-style computer names; they become file names, so nothing path-like is allowed.
_DEVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class PkiError(ValueError):
    """A PKI request is unusable (bad host name, device name, serial or CRL URL); the message names it."""


@dataclass(frozen=True, slots=True)
class CertBundle:
    """A certificate with its private key, as PEM, plus the files it is persisted in."""

    cert_pem: bytes
    key_pem: bytes
    chain_pem: bytes  # leaf first, then the root CA: what a server or client presents
    serial: int
    cert_path: Path | None = None  # the chain PEM on disk, when persisted
    key_path: Path | None = None

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate, parsed."""
        return x509.load_pem_x509_certificate(self.cert_pem)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """Write ``<name>.pem`` (the chain) and ``<name>.key`` (the key, owner-only) into ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
        write_atomic(key_path, self.key_pem, mode=0o600)
        write_atomic(cert_path, self.chain_pem)
        return cert_path, key_path

    def with_paths(self, cert_path: Path, key_path: Path) -> CertBundle:
        """The same bundle, persisted in ``cert_path`` and ``key_path``."""
        return CertBundle(self.cert_pem, self.key_pem, self.chain_pem, self.serial, cert_path, key_path)

    def configure_server_context(self, ctx: ssl.SSLContext) -> None:
        """Load this certificate and key into a server-side ``ctx`` so it presents them."""
        self._load_into(ctx)

    def configure_client_context(self, ctx: ssl.SSLContext) -> None:
        """Load this certificate and key into a client-side ``ctx`` for mutual TLS."""
        self._load_into(ctx)

    def _load_into(self, ctx: ssl.SSLContext) -> None:
        if self.cert_path is not None and self.key_path is not None:
            ctx.load_cert_chain(self.cert_path, self.key_path)
            return
        # The ssl module only loads key material from files; an unpersisted bundle goes through a private temp folder.
        with tempfile.TemporaryDirectory(prefix="cmg-pki-") as tmp:
            cert_path, key_path = self.write(Path(tmp), "bundle")
            ctx.load_cert_chain(cert_path, key_path)


@dataclass(frozen=True, slots=True)
class LeafSpec:
    """What a leaf certificate must say; a persisted leaf that says anything else is issued again."""

    common_name: str
    hosts: tuple[str, ...]
    usage: x509.ObjectIdentifier
    crl_url: str | None = None


def issue_leaf(spec: LeafSpec, *, ca_cert: x509.Certificate, ca_key: CertificateIssuerPrivateKeyTypes,
               ca_pem: bytes, now: float) -> CertBundle:
    """A new leaf (fresh EC P-256 key) saying what ``spec`` says, signed by the CA, valid from a day before ``now``."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utc(now - BACKDATE_SECONDS))
        .not_valid_after(utc(now + LEAF_LIFETIME_SECONDS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signature_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([spec.usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(authority_key_id(ca_cert), critical=False)
    )
    if spec.hosts:
        builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(spec.hosts)), critical=False)
    if spec.crl_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(spec.crl_url)], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return CertBundle(cert_pem=cert_pem, key_pem=private_pem(key), chain_pem=cert_pem + ca_pem, serial=cert.serial_number)


def issue_ccm_signing_cert(public: rsa.RSAPublicKey, *, ca_cert: x509.Certificate,
                           ca_key: CertificateIssuerPrivateKeyTypes, now: float) -> bytes:
    """The CA-signed certificate (PEM) of the key CCM_STS signs CCM tokens with."""
    # synthetic: not the public ConfigMgr format (the real site signs with its own site server certificate)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CCM token signing")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(utc(now - BACKDATE_SECONDS))
        .not_valid_after(utc(now + CCM_SIGNING_LIFETIME_SECONDS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_signature_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(authority_key_id(ca_cert), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def leaf_spec_of(cert: x509.Certificate) -> LeafSpec | None:
    """Read back what a leaf says, in the shape of the spec it was issued for."""
    try:
        common_name = str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (IndexError, x509.ExtensionNotFound):
        return None
    hosts: tuple[str, ...] = ()
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        hosts = tuple(str(name.value) for name in san)
    except x509.ExtensionNotFound:
        pass
    crl_url: str | None = None
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        crl_url = str(points[0].full_name[0].value) if points and points[0].full_name else None
    except x509.ExtensionNotFound:
        pass
    return LeafSpec(common_name, hosts, next(iter(usages)), crl_url)


def rsa_key_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key: a stable key id."""
    numbers = public_key.public_numbers()
    # RFC 7638: the required members only, in lexicographic order, no whitespace.
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AuthorityKeyIdentifier extension naming ``ca_cert``'s key (on leaves and on the CRL)."""
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
    """The host names and addresses a server certificate is asked for, checked and canonically spelled."""
    if isinstance(hosts, str):
        hosts = (hosts,)
    checked: list[str] = []
    for host in hosts:
        if not isinstance(host, str):
            raise PkiError(f"host must be a string, got {host!r}")
        try:
            # The canonical spelling, so that a reloaded certificate's SAN compares equal to the request.
            checked.append(str(ipaddress.ip_address(host)))
        except ValueError:
            if not _DNS_NAME.match(host):
                raise PkiError(f"host is neither an IP address nor a DNS name: {host!r}") from None
            checked.append(host)
    if not checked:
        raise PkiError("a server certificate needs at least one host name or address, got none")
    return tuple(checked)


def check_device_name(name: str) -> str:
    """A device certificate's name: it becomes a file name, so only letters, digits, '-' and '_'."""
    if not isinstance(name, str) or not _DEVICE_NAME.match(name):
        raise PkiError(f"device name must be 1-63 letters, digits, '-' or '_', got {name!r}")
    return name


def check_crl_url(url: str) -> None:
    """Refuse a CRL distribution point that is not an http(s) URL with a host."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PkiError(f"CRL distribution point must be an http(s) URL with a host, got {url!r}")


def utc(epoch_seconds: float) -> dt.datetime:
    """``epoch_seconds`` as an aware UTC datetime (what the certificate builders take)."""
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _signature_key_usage() -> x509.KeyUsage:
    # Leaf and token-signing keys only ever sign (ECDSA handshakes, RS256 tokens); they never encipher keys.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names
