"""SitePki: the site's root CA, the role certificates it signs, the CCM token signing key, and its revocation list.

Everything lives in one folder and is reloaded on the next start, so a restarted site keeps the trust that devices
already hold (their root CA, the CMG certificate serial, the revoked serials).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Sequence
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from cmg_protocol.clock import Clock
from mock_site.pki.certificates import (
    CMG_IDENTITY_COMMON_NAME,
    CONNECTION_POINT_COMMON_NAME,
    DEFAULT_HOSTS,
    RENEW_BEFORE_SECONDS,
    CertBundle,
    LeafSpec,
    PkiError,
    check_crl_url,
    check_device_name,
    check_hosts,
    issue_ccm_signing_cert,
    issue_leaf,
    leaf_spec_of,
    rsa_key_thumbprint,
)
from mock_site.pki.files import private_pem, write_atomic
from mock_site.pki.revocation import DEFAULT_CRL_VALIDITY, RevocationList

CA_ORGANIZATION = "cmg-harness test PKI"


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
        self.revocation = RevocationList(pki_dir / "revocation.json", clock=clock, ca_cert=ca_cert, ca_key=ca_key)

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
            write_atomic(ca_key_path, ca.private_key_pem.bytes(), mode=0o600)
            write_atomic(ca_cert_path, ca.cert_pem.bytes())
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
            write_atomic(crl_path, self.crl_pem())
            ctx.load_verify_locations(cafile=crl_path)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx

    # ------------------------------------------------------------ certificates
    def cmg_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS, *, crl_url: str) -> CertBundle:
        """The CMG's server-auth certificate, naming ``crl_url`` as its CRL distribution point."""
        check_crl_url(crl_url)
        hosts = check_hosts(hosts)
        spec = LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH, crl_url)
        return self._leaf("cmg", spec)

    def mp_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS) -> CertBundle:
        """The management point's server-auth certificate (the connection point reaches it over mutual TLS)."""
        hosts = check_hosts(hosts)
        return self._leaf("mp", LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH))

    def entra_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS) -> CertBundle:
        """The mock Entra ID's server-auth certificate."""
        hosts = check_hosts(hosts)
        return self._leaf("entra", LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH))

    def storage_server_cert(self, hosts: Sequence[str] = DEFAULT_HOSTS, *, crl_url: str) -> CertBundle:
        """The content-enabled CMG's storage endpoint's server-auth certificate, naming ``crl_url`` as its CRL
        distribution point (clients check revocation there as they do at the CMG)."""
        check_crl_url(crl_url)
        hosts = check_hosts(hosts)
        return self._leaf("storage", LeafSpec(hosts[0], hosts, ExtendedKeyUsageOID.SERVER_AUTH, crl_url))

    def cp_client_cert(self) -> CertBundle:
        """The CMG connection point's client-auth certificate, presented to the management point."""
        return self._leaf("cp", LeafSpec(CONNECTION_POINT_COMMON_NAME, (), ExtendedKeyUsageOID.CLIENT_AUTH))

    def cmg_client_cert(self) -> CertBundle:
        """The CMG's client-auth identity, presented to its connection points (they take work from nobody else)."""
        return self._leaf("cmg-identity", LeafSpec(CMG_IDENTITY_COMMON_NAME, (), ExtendedKeyUsageOID.CLIENT_AUTH))

    def device_client_cert(self, name: str) -> CertBundle:
        """A client-auth certificate for device ``name`` on the PKI path, issued on first request and kept."""
        name = check_device_name(name)
        return self._leaf(f"devices/{name}", LeafSpec(name, (name,), ExtendedKeyUsageOID.CLIENT_AUTH))

    def _leaf(self, name: str, spec: LeafSpec) -> CertBundle:
        with self._lock:
            cached = self._bundles.get(name)
            if cached is not None and self._still_good(cached[1], spec):
                return cached[0]
            cert_path, key_path = self.pki_dir / f"{name}.pem", self.pki_dir / f"{name}.key"
            bundle = self._load_leaf(cert_path, key_path, spec)
            if bundle is None:
                bundle = issue_leaf(spec, ca_cert=self._ca_cert, ca_key=self._ca_key, ca_pem=self.ca_pem,
                                    now=self._clock())
                bundle = bundle.with_paths(*bundle.write(cert_path.parent, cert_path.stem))
            self._bundles[name] = (bundle, bundle.certificate)
            return bundle

    def _load_leaf(self, cert_path: Path, key_path: Path, spec: LeafSpec) -> CertBundle | None:
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

    def _still_good(self, cert: x509.Certificate, spec: LeafSpec) -> bool:
        try:
            cert.verify_directly_issued_by(self._ca_cert)
        except (InvalidSignature, ValueError, TypeError):  # signed by another CA, or by a key of another type
            return False
        remaining = cert.not_valid_after_utc.timestamp() - self._clock()
        return remaining > RENEW_BEFORE_SECONDS and leaf_spec_of(cert) == spec

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
        pem = issue_ccm_signing_cert(self._ccm_key.public_key(), ca_cert=self._ca_cert, ca_key=self._ca_key,
                                     now=self._clock())
        write_atomic(path, pem)

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
        self.revocation.revoke(serial)

    def unrevoke(self, serial: int) -> bool:
        """Take ``serial`` off the CRL again; returns whether it was listed."""
        return self.revocation.unrevoke(serial)

    def revoked_serials(self) -> frozenset[int]:
        """The serials the CRL lists."""
        return self.revocation.revoked_serials()

    def crl_pem(self, *, next_update_in: float = DEFAULT_CRL_VALIDITY, expired: bool = False) -> bytes:
        """The current CRL, PEM, signed by the CA; with ``expired`` its nextUpdate lies in the past."""
        return self.revocation.crl_pem(next_update_in=next_update_in, expired=expired)

    def crl_der(self, *, next_update_in: float = DEFAULT_CRL_VALIDITY, expired: bool = False) -> bytes:
        """The current CRL, DER (what a CRL distribution point serves)."""
        return self.revocation.crl_der(next_update_in=next_update_in, expired=expired)


def _load_or_create_ccm_key(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise PkiError(f"CCM signing key {str(path)!r} is not an RSA key")
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_atomic(path, private_pem(key), mode=0o600)
    return key


def _load_issuer_key(pem: bytes, path: Path) -> CertificateIssuerPrivateKeyTypes:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise PkiError(f"CA key {str(path)!r} is neither EC nor RSA")
    return key
