"""Simulated devices: identity and trust state of one Windows client, and reproducible fleets built from a seed and a mix.

A fleet of 100,000 devices needs no storage: ``Fleet.device(i)`` derives device ``i`` from the seed and the index alone,
so any process (a Locust worker, a test) gets the same device for the same index.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cmg_protocol.clientauth import client_token, client_token_signature, hook_properties, public_key_blob
from cmg_protocol.cms import decrypt_enveloped
from cmg_protocol.envelope import clientauth_signature

#: WAM behaviours (docs/faults.md): device token works; fails with 0xd0090016; fails with 0x800703f0; user token fails too.
WAM_OK = "ok"
WAM_DEVICE_FAILS_D0090016 = "device_fails_d0090016"
WAM_DEVICE_FAILS_800703F0 = "device_fails_800703f0"
WAM_USER_FAILS_TOO = "user_fails_too"
WAM_BEHAVIOURS = (WAM_OK, WAM_DEVICE_FAILS_D0090016, WAM_DEVICE_FAILS_800703F0, WAM_USER_FAILS_TOO)

#: The local system account: ccmsetup and the client agent ask for tokens as this account.
SYSTEM_SID = "S-1-5-18"
# synthetic: not the public ConfigMgr format (the simulated devices' DNS domain)
DEVICE_DOMAIN = "corp.contoso.com"
#: Windows locale ids a fleet draws from (en-US, en-GB, de-DE, fr-FR, ja-JP).
LOCALES = (1033, 2057, 1031, 1036, 1041)
#: Default size of the clock error of a skewed device: beyond the 300 s token allowance, so tokens are refused.
DEFAULT_SKEW_SECONDS = 900.0
_MAX_SKEW_SECONDS = 10 * 365 * 86400.0
#: NetBIOS names hold at most 15 characters: "CMGDEV" and up to 9 digits.
MAX_DEVICE_INDEX = 999_999_999


class ProfileError(ValueError):
    """A device trait, fleet share or trait list is unusable; the message names the bad value."""


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """One device: who it is (names, Entra ids, SIDs, locale) and what it trusts and holds (root CA, WPJ, PKI, clock)."""

    index: int
    netbios_name: str
    device_id: str
    tenant_id: str
    user_oid: str
    user_sid: str
    machine_sid: str
    locale_id: int = 1033
    root_ca_present: bool = True
    wpj_cert: bool = True
    pki_client_cert: bool = False
    nocrlcheck: bool = False
    clock_skew: float = 0.0
    wam: str = WAM_OK
    #: Installed with a bulk registration token (ccmsetup /regtoken): the token path, unless a PKI certificate wins.
    bulk_token: bool = False

    def __post_init__(self) -> None:
        if self.wam not in WAM_BEHAVIOURS:
            raise ProfileError(f"wam must be one of {', '.join(WAM_BEHAVIOURS)}, got {self.wam!r}")
        if not math.isfinite(self.clock_skew) or abs(self.clock_skew) > _MAX_SKEW_SECONDS:
            raise ProfileError(f"clock_skew must be a finite number of seconds within ±10 years, got {self.clock_skew!r}")
        if not self.netbios_name or len(self.netbios_name) > 15:
            raise ProfileError(f"a NetBIOS name has 1..15 characters, got {self.netbios_name!r}")
        for name in ("device_id", "tenant_id", "user_oid"):
            value = getattr(self, name)
            try:
                uuid.UUID(value)
            except (ValueError, AttributeError, TypeError):
                raise ProfileError(f"{name} must be a GUID, got {value!r}") from None

    @property
    def fq_name(self) -> str:
        """The fully qualified computer name (derived, so a device stores one name, not two)."""
        return f"{self.netbios_name.lower()}.{DEVICE_DOMAIN}"

    @property
    def takes_pki_path(self) -> bool:
        """A valid PKI client-auth certificate always wins over Entra ID (the walk-through's note)."""
        return self.pki_client_cert

    @property
    def takes_token_path(self) -> bool:
        """Neither PKI nor Entra: the bulk registration token, then the client-unique token (a PKI certificate wins)."""
        return self.bulk_token and not self.pki_client_cert

    @property
    def client_guid(self) -> str:
        """The ``GUID:…`` id the client proposes before the site assigns one (stable per device)."""
        return "GUID:" + str(uuid.uuid5(uuid.NAMESPACE_OID, self.device_id)).upper()

    @property
    def wam_account_id(self) -> str:
        """The WAM account id ccmsetup names when it asks for a user token (stable per device)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"wam:{self.user_oid}")).upper()

    def with_traits(self, **traits: object) -> DeviceProfile:
        """This device with some fields changed (a ``ProfileError`` names an unknown field)."""
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(traits) - fields)
        if unknown:
            raise ProfileError(f"unknown device field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **traits)  # type: ignore[arg-type]


# --- fleet mix --------------------------------------------------------------------------------------------------------

#: Mix keys that are shares of the fleet (0..1), by docs/faults.md device-fault name.
SHARE_TRAITS = (
    "wpj_missing", "root_ca_missing", "pki_client_cert", "nocrlcheck", "wam_device_token_error", "no_user_token",
    "clock_skew", "bulk_token",
)
#: Mix keys that are not shares.
VALUE_TRAITS = ("skew_seconds",)


@dataclass(frozen=True, slots=True)
class FleetMix:
    """The share of the fleet with each device trait; ``skew_seconds`` is how far a skewed clock is off (either way)."""

    wpj_missing: float = 0.0
    root_ca_missing: float = 0.0
    pki_client_cert: float = 0.0
    nocrlcheck: float = 0.0
    wam_device_token_error: float = 0.0
    no_user_token: float = 0.0
    clock_skew: float = 0.0
    bulk_token: float = 0.0
    skew_seconds: float = DEFAULT_SKEW_SECONDS

    def __post_init__(self) -> None:
        for name in SHARE_TRAITS:
            share = getattr(self, name)
            if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0.0 <= share <= 1.0:
                raise ProfileError(f"share of {name} must be a number in [0, 1], got {share!r}")
        if self.wam_device_token_error + self.no_user_token > 1.0:
            raise ProfileError(
                f"wam_device_token_error + no_user_token must not exceed 1 (they are exclusive WAM behaviours), got "
                f"{self.wam_device_token_error} + {self.no_user_token}")
        skew = self.skew_seconds
        if isinstance(skew, bool) or not isinstance(skew, (int, float)) or not 0 <= skew <= _MAX_SKEW_SECONDS:
            raise ProfileError(f"skew_seconds must be a number of seconds in [0, 10 years], got {skew!r}")

    @classmethod
    def parse(cls, text: str) -> FleetMix:
        """Read ``"wpj_missing=0.2,root_ca_missing=0.05"``; unknown names and bad shares are refused by name."""
        values: dict[str, float] = {}
        known = SHARE_TRAITS + VALUE_TRAITS
        unknown = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, raw = item.partition("=")
            name = name.strip()
            if not sep:
                raise ProfileError(f"fleet mix entries are NAME=SHARE, got {item!r}")
            if name not in known:
                unknown.append(name)
                continue
            if name in values:
                raise ProfileError(f"fleet mix names {name!r} twice")
            try:
                values[name] = float(raw)
            except ValueError:
                raise ProfileError(f"share of {name} must be a number, got {raw.strip()!r}") from None
        if unknown:
            raise ProfileError(f"unknown fleet trait(s): {', '.join(unknown)} (known: {', '.join(known)})")
        return cls(**values)


class Fleet:
    """A reproducible population of devices: device ``i`` depends only on the seed, the mix, the tenants and ``i``."""

    def __init__(self, seed: int, mix: FleetMix | None = None, tenant_ids: Sequence[str] = ()) -> None:
        if not tenant_ids:
            raise ProfileError("a fleet needs at least one tenant id")
        checked = []
        for tenant_id in tenant_ids:
            try:
                checked.append(str(uuid.UUID(tenant_id)))
            except (ValueError, AttributeError, TypeError):
                raise ProfileError(f"tenant id must be a GUID, got {tenant_id!r}") from None
        self.seed = seed
        self.mix = mix or FleetMix()
        # One shared string per tenant: 100,000 devices point at a handful of strings.
        self.tenant_ids = tuple(checked)

    def device(self, index: int) -> DeviceProfile:
        """Device number ``index`` (0-based), the same every time for the same seed, mix and tenants."""
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= MAX_DEVICE_INDEX:
            raise ProfileError(f"device index must be an integer in 0..{MAX_DEVICE_INDEX}, got {index!r}")
        # A string seed goes through SHA-512, so neighbouring indexes get unrelated streams.
        rng = random.Random(f"cmg-harness/{self.seed}/{index}")
        mix = self.mix
        identity = rng.getrandbits(256)
        device_id = str(uuid.UUID(int=identity & ((1 << 128) - 1), version=4))
        user_oid = str(uuid.UUID(int=identity >> 128, version=4))
        domain = "-".join(str(rng.randrange(100_000_000, 4_294_967_295)) for _ in range(3))
        draws = [rng.random() for _ in range(6)]
        wam_draw = draws[4]
        if wam_draw < mix.no_user_token:
            wam = WAM_USER_FAILS_TOO
        elif wam_draw < mix.no_user_token + mix.wam_device_token_error:
            wam = WAM_DEVICE_FAILS_D0090016 if rng.random() < 0.5 else WAM_DEVICE_FAILS_800703F0
        else:
            wam = WAM_OK
        skew = 0.0
        if draws[5] < mix.clock_skew:
            skew = mix.skew_seconds if rng.random() < 0.5 else -mix.skew_seconds
        profile = DeviceProfile(
            index=index,
            netbios_name=f"CMGDEV{index:07d}",
            device_id=device_id,
            tenant_id=self.tenant_ids[rng.randrange(len(self.tenant_ids))],
            user_oid=user_oid,
            user_sid=f"S-1-5-21-{domain}-{1000 + rng.randrange(100_000)}",
            machine_sid=f"S-1-5-21-{rng.randrange(100_000_000, 4_294_967_295)}-"
                        f"{rng.randrange(100_000_000, 4_294_967_295)}-{rng.randrange(100_000_000, 4_294_967_295)}",
            locale_id=LOCALES[rng.randrange(len(LOCALES))],
            root_ca_present=draws[0] >= mix.root_ca_missing,
            wpj_cert=draws[1] >= mix.wpj_missing,
            pki_client_cert=draws[2] < mix.pki_client_cert,
            nocrlcheck=draws[3] < mix.nocrlcheck,
            clock_skew=skew,
            wam=wam,
        )
        # Drawn last, so adding the trait left every other device of a seed as it was.
        if rng.random() < mix.bulk_token:
            profile = dataclasses.replace(profile, bulk_token=True)
        return profile


# --- traits for one device (the CLI's --profile) ----------------------------------------------------------------------

_FLAG_TRAITS: Mapping[str, dict[str, object]] = {
    "root_ca_missing": {"root_ca_present": False},
    "wpj_missing": {"wpj_cert": False},
    "pki_client_cert": {"pki_client_cert": True},
    "nocrlcheck": {"nocrlcheck": True},
    "wam_device_token_error": {"wam": WAM_DEVICE_FAILS_D0090016},
    "no_user_token": {"wam": WAM_USER_FAILS_TOO},
    "bulk_token": {"bulk_token": True},
}
_VALUE_TRAITS = ("clock_skew", "wam", "tenant_id")


def parse_traits(text: str) -> dict[str, object]:
    """Read ``"wpj_missing,pki_client_cert,clock_skew=900,wam=device_fails_800703f0"`` into DeviceProfile fields."""
    traits: dict[str, object] = {}
    unknown = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = (piece.strip() for piece in item.partition("="))
        if name in _FLAG_TRAITS:
            if sep:
                raise ProfileError(f"trait {name!r} is a flag and takes no value, got {item!r}")
            traits.update(_FLAG_TRAITS[name])
        elif name in _VALUE_TRAITS:
            if not sep or not raw:
                raise ProfileError(f"trait {name!r} needs a value ({name}=...), got {item!r}")
            traits[name] = _trait_value(name, raw)
        else:
            unknown.append(name)
    if unknown:
        known = ", ".join(sorted(_FLAG_TRAITS) + [f"{name}=..." for name in _VALUE_TRAITS])
        raise ProfileError(f"unknown device trait(s): {', '.join(unknown)} (known: {known})")
    return traits


def _trait_value(name: str, raw: str) -> object:
    if name == "clock_skew":
        try:
            skew = float(raw)
        except ValueError:
            raise ProfileError(f"clock_skew must be a number of seconds, got {raw!r}") from None
        if not math.isfinite(skew) or abs(skew) > _MAX_SKEW_SECONDS:
            raise ProfileError(f"clock_skew must be a finite number of seconds within ±10 years, got {raw!r}")
        return skew
    if name == "wam":
        if raw not in WAM_BEHAVIOURS:
            raise ProfileError(f"wam must be one of {', '.join(WAM_BEHAVIOURS)}, got {raw!r}")
        return raw
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise ProfileError(f"tenant_id must be a GUID, got {raw!r}") from None


# --- the client's self-signed "SMS signing" certificate ---------------------------------------------------------------

#: clientauth hooks an identity remembers (about 1.7 KB each: two signatures and the body part they sign). A process is
#: CPU-bound when few devices poll often (a compressed time scale): they all fit. A process of 100,000 real-time devices
#: is memory-bound, polls rarely, and signs as it always did; the cache costs it a few MB, never a share per device.
HOOK_CACHE_SIZE = 2048


class SmsSigningIdentity:
    """The self-signed certificate and key a client registers with (hex DER) and signs its registration with.

    A real client makes its own; simulated devices share one per process, because an RSA key per device would cost
    more than the rest of its life, and the site only stores the certificate.
    """

    _shared: SmsSigningIdentity | None = None

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SMS")])
        # Fixed dates: the certificate's bytes must not depend on when the process started.
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.key.public_key())
            .serial_number(1).not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2120, 1, 1, tzinfo=dt.UTC)).sign(self.key, hashes.SHA256())
        )
        self.cert = cert
        self.cert_hex = cert.public_bytes(serialization.Encoding.DER).hex().upper()
        self.public_key_blob = public_key_blob(self.key.public_key())
        self._hooks: dict[tuple[str, bytes, str], tuple[tuple[str, str], ...]] = {}
        self._token_signatures: dict[str, str] = {}

    @classmethod
    def shared(cls) -> SmsSigningIdentity:
        """The process-wide identity, made on first use."""
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def sign(self, data: bytes) -> str:
        """A registration signature over ``data`` (RSA PKCS#1 v1.5, SHA-256, bytes reversed, upper-case hex)."""
        return clientauth_signature(self.key, data)

    def clientauth(self, client_id: str, payload: bytes, machine: str) -> tuple[tuple[str, str], ...]:
        """The clientauth hook for a message with this body part, from this client.

        Both signatures are PKCS#1 v1.5 (deterministic) over the client id and the body part as sent, so a device
        sending a byte-identical body again (every policy poll of a device is one) gets the very hook it got before:
        it is remembered per (client id, body part, machine) rather than signed again with two RSA operations. A
        changed body or client id is a new key and is signed afresh. The cache is bounded (emptied when full), so
        its memory does not grow with the fleet: a process whose devices outnumber it signs as before.
        """
        key = (client_id, payload, machine)
        hook = self._hooks.get(key)
        if hook is None:
            hook = hook_properties(self.key, client_id, payload, machine, public_key=self.public_key_blob)
            if len(self._hooks) >= HOOK_CACHE_SIZE:
                self._hooks.clear()
            self._hooks[key] = hook
        return hook

    def client_token_headers(self, client_id: str, when: float) -> dict[str, str]:
        """``ClientToken`` and ``ClientTokenSignature`` for a policy body download."""
        token = client_token(client_id, when)
        # The token names its second, and the signature is deterministic: the policy bodies a device downloads within
        # one second carry the very same signature, remembered rather than made again (bounded as the hooks are).
        signature = self._token_signatures.get(token)
        if signature is None:
            signature = client_token_signature(self.key, token)
            if len(self._token_signatures) >= HOOK_CACHE_SIZE:
                self._token_signatures.clear()
            self._token_signatures[token] = signature
        return {"ClientToken": token, "ClientTokenSignature": signature}

    def decrypt(self, data: bytes) -> bytes:
        """Open a secret policy (CMS EnvelopedData addressed to this identity's certificate)."""
        return decrypt_enveloped(data, self.cert, self.key)
