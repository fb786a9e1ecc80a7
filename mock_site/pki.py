"""The site's test PKI: one root CA, the role certificates it signs, the CCM token signing key, and the CRL.

Everything lives in one folder and is reloaded on the next start, so a restarted site keeps the trust that devices
already hold (their root CA, the CMG certificate serial, the revoked serials).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import ssl
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes, PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cmg_protocol.clock import Clock

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost")
#: RFC 5280 calls it nextUpdate; Windows treats a CRL past it as offline, so a week keeps long runs valid.
DEFAULT_CRL_VALIDITY = 7 * 86400.0
CONNECTION_POINT_COMMON_NAME = "CMG connection point"
CA_ORGANIZATION = "cmg-harness test PKI"

_DAY = 86400.0
#: Leaf certificates start a day early so that a slightly wrong clock on either side does not fail TLS.
_BACKDATE = _DAY
#: Leaf lifetime: the public-TLS maximum, long enough for any run.
_LEAF_LIFETIME = 397 * _DAY
#: A persisted leaf this close to its end is issued again instead of reused.
_RENEW_BEFORE = 30 * _DAY
#: How far in the past an expired CRL's nextUpdate lies: beyond any clock-skew allowance a verifier might have.
_EXPIRED_BY = _DAY
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
        _write_atomic(key_path, self.key_pem, mode=0o600)
        _write_atomic(cert_path, self.chain_pem)
        return cert_path, key_path

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
class _LeafSpec:
    """What a leaf certificate must say; a persisted leaf that says anything else is issued again."""

    common_name: str
    hosts: tuple[str, ...]
    usage: x509.ObjectIdentifier
    crl_url: str | None = None


@dataclass(slots=True)
class _CachedCrl:
    der: bytes
    pem: bytes
    built_at: float
    revocation_version: int


class SitePki:
    """Root CA, role certificates, CCM signing key and CRL of one site, persisted in ``pki_dir``."""

    def __init__(
        self,
        pki_dir: Path,
        *,
        clock: Clock,
        ca: trustme.CA,
        ca_cert: x509.Certificate,
        ca_key: CertificateIssuerPrivateKeyTypes,
        ccm_key: rsa.RSAPrivateKey,
    ) -> None:
        self.pki_dir = pki_dir
        self._clock = clock
        self._ca = ca
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._ccm_key = ccm_key
        self._ccm_kid = rsa_key_thumbprint(ccm_key.public_key())
        self._lock = threading.RLock()
        self._bundles: dict[str, tuple[CertBundle, x509.Certificate]] = {}
        self._revoked: dict[int, float] = {}
        self._crl_number = 0
        self._revocation_version = 0
        self._crl_cache: dict[tuple[bool, float], _CachedCrl] = {}
        self._load_state()

    # ----------------------------------------------------------------- creation
    @classmethod
    def load_or_create(cls, pki_dir: Path, *, clock: Clock) -> SitePki:
        """Load the PKI persisted in ``pki_dir``, creating the CA and CCM signing key the first time."""
        pki_dir.mkdir(parents=True, exist_ok=True)
        ca_cert_path, ca_key_path = pki_dir / "ca.pem", pki_dir / "ca.key"
        if ca_cert_path.exists() and ca_key_path.exists():
            ca = trustme.CA.from_pem(ca_cert_path.read_bytes(), ca_key_path.read_bytes())
        else:
            ca = trustme.CA(organization_name=CA_ORGANIZATION)
            _write_atomic(ca_key_path, ca.private_key_pem.bytes(), mode=0o600)
            _write_atomic(ca_cert_path, ca.cert_pem.bytes())
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        ca_key = _load_issuer_key(ca_key_path.read_bytes(), ca_key_path)
        ccm_key = _load_or_create_ccm_key(pki_dir / "ccm-signing.key")
        pki = cls(pki_dir, clock=clock, ca=ca, ca_cert=ca_cert, ca_key=ca_key, ccm_key=ccm_key)
        pki._ensure_ccm_signing_cert()
        return pki

    # ------------------------------------------------------------------- trust
    @property
    def ca_pem(self) -> bytes:
        """The root CA certificate, PEM: what a device puts in its trusted root store."""
        return self._ca.cert_pem.bytes()

    @property
    def ca_file(self) -> Path:
        """The root CA certificate's file on disk (for ``cafile=`` arguments and other tools)."""
        return self.pki_dir / "ca.pem"

    @property
    def ca_certificate(self) -> x509.Certificate:
        """The root CA certificate, parsed."""
        return self._ca_cert

    def trust_context_server(self, *, crl_check: bool = False) -> ssl.SSLContext:
        """A client-side TLS context that verifies site servers against the root CA (and the CRL when asked)."""
        # Only the site CA: with cadata given, the system's roots are not loaded, as on a device without them.
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=self.ca_pem.decode("ascii"))
        if crl_check:
            # CRLs load only from files (cadata takes certificates alone), so the current CRL is written next to the CA.
            crl_path = self.pki_dir / "site.crl.pem"
            _write_atomic(crl_path, self.crl_pem())
            ctx.load_verify_locations(cafile=crl_path)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx

    # ------------------------------------------------------------ certificates
    def cmg_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS, *, crl_url: str) -> CertBundle:
        """The CMG's server-auth certificate, naming ``crl_url`` as its CRL distribution point."""
        _check_crl_url(crl_url)
        hosts = _check_hosts(hosts)
        spec = _LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH, crl_url)
        return self._leaf("cmg", spec)

    def mp_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS) -> CertBundle:
        """The management point's server-auth certificate (the connection point reaches it over mutual TLS)."""
        hosts = _check_hosts(hosts)
        return self._leaf("mp", _LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH))

    def entra_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS) -> CertBundle:
        """The mock Entra ID's server-auth certificate."""
        hosts = _check_hosts(hosts)
        return self._leaf("entra", _LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH))

    def cp_client_cert(self) -> CertBundle:
        """The CMG connection point's client-auth certificate, presented to the management point."""
        return self._leaf("cp", _LeafSpec(CONNECTION_POINT_COMMON_NAME, (), ExtendedKeyUsageOID.CLIENT_AUTH))

    def device_client_cert(self, name: str) -> CertBundle:
        """A client-auth certificate for device ``name`` on the PKI path, issued on first request and kept."""
        if not isinstance(name, str) or not _DEVICE_NAME.match(name):
            raise PkiError(f"device name must be 1-63 letters, digits, '-' or '_', got {name!r}")
        return self._leaf(f"devices/{name}", _LeafSpec(name, (name,), ExtendedKeyUsageOID.CLIENT_AUTH))

    def _leaf(self, name: str, spec: _LeafSpec) -> CertBundle:
        with self._lock:
            cached = self._bundles.get(name)
            if cached is not None and self._still_good(cached[1], spec):
                return cached[0]
            cert_path, key_path = self.pki_dir / f"{name}.pem", self.pki_dir / f"{name}.key"
            bundle = self._load_leaf(cert_path, key_path, spec)
            if bundle is None:
                bundle = self._issue_leaf(spec)
                cert_path, key_path = bundle.write(cert_path.parent, cert_path.stem)
                bundle = _with_paths(bundle, cert_path, key_path)
            self._bundles[name] = (bundle, bundle.certificate)
            return bundle

    def _load_leaf(self, cert_path: Path, key_path: Path, spec: _LeafSpec) -> CertBundle | None:
        if not (cert_path.exists() and key_path.exists()):
            return None
        try:
            certs = x509.load_pem_x509_certificates(cert_path.read_bytes())
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except ValueError:
            return None  # a damaged file is replaced, not fatal: the CA can always issue again
        leaf = certs[0]
        if not self._still_good(leaf, spec) or leaf.public_key() != key.public_key():
            return None
        return CertBundle(
            cert_pem=leaf.public_bytes(serialization.Encoding.PEM),
            key_pem=key_path.read_bytes(),
            chain_pem=cert_path.read_bytes(),
            serial=leaf.serial_number,
            cert_path=cert_path,
            key_path=key_path,
        )

    def _still_good(self, cert: x509.Certificate, spec: _LeafSpec) -> bool:
        try:
            cert.verify_directly_issued_by(self._ca_cert)
        except (InvalidSignature, ValueError, TypeError):  # signed by another CA, or by a key of another type
            return False
        remaining = cert.not_valid_after_utc.timestamp() - self._clock()
        return remaining > _RENEW_BEFORE and _leaf_spec_of(cert) == spec

    def _issue_leaf(self, spec: _LeafSpec) -> CertBundle:
        key = ec.generate_private_key(ec.SECP256R1())
        now = self._clock()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spec.common_name)]))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - _BACKDATE))
            .not_valid_after(_utc(now + _LEAF_LIFETIME))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_signature_key_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([spec.usage]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(_authority_key_id(self._ca_cert), critical=False)
        )
        if spec.hosts:
            builder = builder.add_extension(x509.SubjectAlternativeName(_general_names(spec.hosts)), critical=False)
        if spec.crl_url is not None:
            point = x509.DistributionPoint([x509.UniformResourceIdentifier(spec.crl_url)], None, None, None)
            builder = builder.add_extension(x509.CRLDistributionPoints([point]), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        cert_pem = cert.public_bytes(serialization.Encoding.PEM)
        return CertBundle(
            cert_pem=cert_pem,
            key_pem=_private_pem(key),
            chain_pem=cert_pem + self.ca_pem,
            serial=cert.serial_number,
        )

    # ------------------------------------------------------- CCM signing key
    @property
    def ccm_signing_key(self) -> rsa.RSAPrivateKey:
        """The key CCM_STS signs CCM tokens with (RSA-2048, loaded once)."""
        return self._ccm_key

    @property
    def ccm_signing_kid(self) -> str:
        """The CCM signing key's id: the RFC 7638 SHA-256 thumbprint of its public key."""
        return self._ccm_kid

    @property
    def ccm_signing_cert_pem(self) -> bytes:
        """The CA-signed certificate of the CCM signing key."""
        return (self.pki_dir / "ccm-signing.pem").read_bytes()

    def ccm_public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        """The public keys that verify CCM tokens, by kid."""
        return {self._ccm_kid: self._ccm_key.public_key()}

    def _ensure_ccm_signing_cert(self) -> None:
        path = self.pki_dir / "ccm-signing.pem"
        if path.exists() and self._is_ccm_signing_cert(path.read_bytes()):
            return
        now = self._clock()
        public = self._ccm_key.public_key()
        # synthetic: not the public ConfigMgr format (the real site signs with its own site server certificate)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CCM token signing")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self._ca_cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - _BACKDATE))
            .not_valid_after(_utc(now + 10 * 365 * _DAY))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_signature_key_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(_authority_key_id(self._ca_cert), critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        _write_atomic(path, cert.public_bytes(serialization.Encoding.PEM))

    def _is_ccm_signing_cert(self, pem: bytes) -> bool:
        try:
            cert = x509.load_pem_x509_certificate(pem)
            cert.verify_directly_issued_by(self._ca_cert)
        except (InvalidSignature, ValueError, TypeError):  # unreadable or foreign: it is issued again
            return False
        return cert.public_key() == self._ccm_key.public_key()

    # -------------------------------------------------------------- revocation
    def revoke(self, serial: int) -> None:
        """List certificate ``serial`` in the CRL from now on (persisted)."""
        _check_serial(serial)
        with self._lock:
            if serial in self._revoked:
                return
            self._revoked[serial] = self._clock()
            self._revocation_version += 1
            self._save_state()

    def unrevoke(self, serial: int) -> bool:
        """Take ``serial`` off the CRL again; returns whether it was listed."""
        _check_serial(serial)
        with self._lock:
            if self._revoked.pop(serial, None) is None:
                return False
            self._revocation_version += 1
            self._save_state()
            return True

    def revoked_serials(self) -> frozenset[int]:
        """The serials the CRL lists."""
        with self._lock:
            return frozenset(self._revoked)

    # --------------------------------------------------------------------- CRL
    def crl_pem(self, *, next_update_in: float = DEFAULT_CRL_VALIDITY, expired: bool = False) -> bytes:
        """The current CRL, PEM, signed by the CA; with ``expired`` its nextUpdate lies in the past."""
        return self._crl(next_update_in, expired).pem

    def crl_der(self, *, next_update_in: float = DEFAULT_CRL_VALIDITY, expired: bool = False) -> bytes:
        """The current CRL, DER (what a CRL distribution point serves)."""
        return self._crl(next_update_in, expired).der

    def _crl(self, next_update_in: float, expired: bool) -> _CachedCrl:
        if not next_update_in > 0:
            raise PkiError(f"CRL nextUpdate interval must be > 0 s, got {next_update_in!r}")
        now = self._clock()
        key = (expired, float(next_update_in))
        cached = self._crl_cache.get(key)
        # Rebuild when the revoked set changed, or once half of the validity window has gone (a CA republishes
        # well before nextUpdate so that no verifier ever holds a stale CRL).
        if (
            cached is not None
            and cached.revocation_version == self._revocation_version
            and cached.built_at <= now < cached.built_at + next_update_in / 2
        ):
            return cached
        with self._lock:
            built = self._build_crl(now, next_update_in, expired)
            self._crl_cache[key] = built
            return built

    def _build_crl(self, now: float, next_update_in: float, expired: bool) -> _CachedCrl:
        if expired:
            last_update, next_update = now - _EXPIRED_BY - next_update_in, now - _EXPIRED_BY
        else:
            last_update, next_update = now, now + next_update_in
        self._crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._ca_cert.subject)
            .last_update(_utc(last_update))
            .next_update(_utc(next_update))
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(_authority_key_id(self._ca_cert), critical=False)
        )
        for serial, revoked_at in sorted(self._revoked.items()):
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(_utc(min(revoked_at, last_update)))
                .build()
            )
            builder = builder.add_revoked_certificate(entry)
        crl = builder.sign(self._ca_key, hashes.SHA256())
        self._save_state()  # the CRL number must keep rising across restarts
        return _CachedCrl(
            der=crl.public_bytes(serialization.Encoding.DER),
            pem=crl.public_bytes(serialization.Encoding.PEM),
            built_at=now,
            revocation_version=self._revocation_version,
        )

    # ------------------------------------------------------------ persistence
    @property
    def _state_path(self) -> Path:
        return self.pki_dir / "revocation.json"

    def _load_state(self) -> None:
        if not self._state_path.exists():
            return
        try:
            state = json.loads(self._state_path.read_text(encoding="utf-8"))
            self._revoked = {int(serial): float(when) for serial, when in state.get("revoked", {}).items()}
            self._crl_number = int(state.get("crl_number", 0))
        except (ValueError, AttributeError) as exc:
            raise PkiError(f"revocation state {str(self._state_path)!r} is unreadable: {exc}") from None

    def _save_state(self) -> None:
        state = {"revoked": {str(s): t for s, t in sorted(self._revoked.items())}, "crl_number": self._crl_number}
        _write_atomic(self._state_path, json.dumps(state, indent=1).encode("utf-8"))


# ------------------------------------------------------------------ helpers
def rsa_key_thumbprint(public_key: rsa.RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url) of an RSA public key: a stable key id."""
    numbers = public_key.public_numbers()
    # RFC 7638: the required members only, in lexicographic order, no whitespace.
    canonical = json.dumps(
        {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}, separators=(",", ":")
    )
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _load_or_create_ccm_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PkiError(f"CCM signing key {str(path)!r} is not an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_atomic(path, _private_pem(key), mode=0o600)
    return key


def _load_issuer_key(pem: bytes, path: Path) -> CertificateIssuerPrivateKeyTypes:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"CA key {str(path)!r} is neither EC nor RSA")
    return key


def _private_pem(key: PrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _with_paths(bundle: CertBundle, cert_path: Path, key_path: Path) -> CertBundle:
    return CertBundle(bundle.cert_pem, bundle.key_pem, bundle.chain_pem, bundle.serial, cert_path, key_path)


def _leaf_spec_of(cert: x509.Certificate) -> _LeafSpec | None:
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
    return _LeafSpec(common_name, hosts, next(iter(usages)), crl_url)


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


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _check_hosts(hosts: Sequence[str]) -> tuple[str, ...]:
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


def _check_crl_url(url: str) -> None:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise PkiError(f"CRL distribution point must be an http(s) URL with a host, got {url!r}")


def _check_serial(serial: int) -> None:
    if isinstance(serial, bool) or not isinstance(serial, int) or serial <= 0:
        raise PkiError(f"certificate serial must be a positive integer, got {serial!r}")


def _utc(epoch_seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch_seconds, tz=dt.UTC)


def _write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write via a temporary file and rename, so a crash never leaves half a key or certificate behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
