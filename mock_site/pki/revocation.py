"""The site CA's revocation list: which serials are revoked, the CRL that lists them, and its state on disk."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes

from cmg_protocol.clock import Clock
from mock_site.pki.certificates import DAY_SECONDS, PkiError, authority_key_id, utc
from mock_site.pki.files import write_atomic

#: RFC 5280 calls it nextUpdate; Windows treats a CRL past it as offline, so a week keeps long runs valid.
DEFAULT_CRL_VALIDITY = 7 * DAY_SECONDS
#: How far in the past an expired CRL's nextUpdate lies: beyond any clock-skew allowance a verifier might have.
_EXPIRED_BY_SECONDS = DAY_SECONDS


@dataclass(slots=True)
class _CachedCrl:
    der: bytes
    pem: bytes
    built_at: float
    revocation_version: int


class RevocationList:
    """Revoked serials and CRL number of one CA, persisted in ``state_path`` (JSON) so restarts keep both."""

    def __init__(self, state_path: Path, *, clock: Clock, ca_cert: x509.Certificate,
                 ca_key: CertificateIssuerPrivateKeyTypes) -> None:
        self.state_path = state_path
        self._clock = clock
        self._ca_cert = ca_cert
        self._ca_key = ca_key
        self._lock = threading.RLock()
        self._revoked: dict[int, float] = {}
        self._crl_number = 0
        self._revocation_version = 0
        self._crl_cache: dict[tuple[bool, float], _CachedCrl] = {}
        self._load_state()

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
            last_update, next_update = now - _EXPIRED_BY_SECONDS - next_update_in, now - _EXPIRED_BY_SECONDS
        else:
            last_update, next_update = now, now + next_update_in
        self._crl_number += 1
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self._ca_cert.subject)
            .last_update(utc(last_update))
            .next_update(utc(next_update))
            .add_extension(x509.CRLNumber(self._crl_number), critical=False)
            .add_extension(authority_key_id(self._ca_cert), critical=False)
        )
        for serial, revoked_at in sorted(self._revoked.items()):
            entry = (
                x509.RevokedCertificateBuilder()
                .serial_number(serial)
                .revocation_date(utc(min(revoked_at, last_update)))
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

    def _load_state(self) -> None:
        if not self.state_path.exists():
            return
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            self._revoked = {int(serial): float(when) for serial, when in state.get("revoked", {}).items()}
            self._crl_number = int(state.get("crl_number", 0))
        except (ValueError, AttributeError, TypeError) as exc:  # TypeError: a null where a number belongs
            raise PkiError(f"revocation state {str(self.state_path)!r} is unreadable: {exc}") from None

    def _save_state(self) -> None:
        state = {"revoked": {str(s): t for s, t in sorted(self._revoked.items())}, "crl_number": self._crl_number}
        write_atomic(self.state_path, json.dumps(state, indent=1).encode("utf-8"))


def _check_serial(serial: int) -> None:
    if isinstance(serial, bool) or not isinstance(serial, int) or serial <= 0:
        raise PkiError(f"certificate serial must be a positive integer, got {serial!r}")
