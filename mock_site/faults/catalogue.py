"""The fault catalogue: every server-side fault the site can inject, its parameters and its expected outcome."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from cmg_protocol.statuses import MP_NOT_REGISTERED, MP_SIGNATURE_INVALID

#: The site roles a fault can target.
ROLES = ("cmg", "cp", "mp", "sts", "entra", "crl", "storage")
#: The roles that forward or answer client traffic; generic network chaos applies at these (docs/faults.md).
PROXY_ROLES = ("cmg", "cp", "mp")
#: How long a fault stays on when the caller gives no duration (real seconds): a fault never lingers.
DEFAULT_DURATION = 300.0
#: The longest a fault may stay on (real seconds).
MAX_DURATION = 24 * 3600.0
#: Parameter kinds: JSON-friendly names for the value types a parameter accepts.
PARAM_KINDS = ("int", "float", "text", "guid")

ParamValue = int | float | str | None


class FaultError(ValueError):
    """A fault name, role, probability, duration or parameter is unusable; the message names the bad value."""


class UnknownFault(FaultError):
    """The fault name is not in the catalogue."""


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """One parameter of a fault: its kind, default (``None`` = optional, unset) and valid range."""

    name: str
    kind: str
    default: ParamValue
    description: str
    minimum: float | None = None
    maximum: float | None = None
    max_length: int = 200

    def coerce(self, fault: str, value: object) -> ParamValue:
        """Check ``value`` against this parameter and return it normalised (ints as int, GUIDs lower-case)."""
        label = f"parameter {self.name!r} of fault {fault!r}"
        if value is None:
            if self.default is None:
                return None
            raise FaultError(f"{label} must not be null")
        if self.kind == "int":
            number: int | float = self._integer(label, value)
        elif self.kind == "float":
            number = self._real(label, value)
        elif self.kind == "text":
            return self._text(label, value)
        else:
            return self._guid(label, value)
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise FaultError(f"{label} must be in {self._range()}, got {shown_value(value)}")
        return number

    def _range(self) -> str:
        return f"{_fmt(self.minimum)}..{_fmt(self.maximum)}"

    def _integer(self, label: str, value: object) -> int:
        # JSON has one number type, so an integral float such as 503.0 is accepted as the integer it spells.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise FaultError(f"{label} must be an integer in {self._range()}, got {shown_value(value)}")
        return value

    def _real(self, label: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise FaultError(f"{label} must be a number in {self._range()}, got {shown_value(value)}")
        try:
            number = float(value)
        except OverflowError:  # an int beyond the float range
            number = math.inf
        # NaN and the infinities (JSON's 1e400 parses to inf) are refused here, before any comparison.
        if not math.isfinite(number):
            raise FaultError(f"{label} must be a finite number in {self._range()}, got {shown_value(value)}")
        return number

    def _text(self, label: str, value: object) -> str:
        # The text may end up in a status line or a header, so only visible ASCII and spaces are allowed.
        if not isinstance(value, str) or not 1 <= len(value) <= self.max_length:
            raise FaultError(f"{label} must be text of 1..{self.max_length} characters, got {shown_value(value)}")
        if any(not " " <= ch <= "~" for ch in value):
            raise FaultError(f"{label} must be printable ASCII, got {shown_value(value)}")
        return value

    def _guid(self, label: str, value: object) -> str:
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
        raise FaultError(f"{label} must be a GUID, got {shown_value(value)}")

    def to_dict(self) -> dict[str, Any]:
        """The parameter as JSON-ready data for the control API and the UI."""
        return {
            "name": self.name,
            "type": self.kind,
            "default": self.default,
            "minimum": self.minimum,
            "maximum": self.maximum,
            "description": self.description,
        }


#: How much of a refused value an error message repeats.
SHOWN_VALUE_CHARS = 40


def shown_value(value: object) -> str:
    """``repr(value)`` for an error message, cut short: a refused value may be a 4,000-digit number or a deep list."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**SHOWN_VALUE_CHARS:
        return f"an integer of {len(str(abs(value)))} digits"
    try:
        text = repr(value)
    except RecursionError:
        text = ""
    if len(text) <= SHOWN_VALUE_CHARS and text:
        return text
    if isinstance(value, (list, dict)):
        return f"a JSON {'array' if isinstance(value, list) else 'object'} of {len(value)} items"
    return text[:SHOWN_VALUE_CHARS - 3] + "..."


def _fmt(bound: float | None) -> str:
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """A server-side fault: where it can apply, its parameters, and what a client should see while it is on."""

    name: str
    roles: tuple[str, ...]
    default_role: str
    description: str
    expected_outcome: str
    params: tuple[ParamSpec, ...] = ()
    #: HTTP status a client sees on a request the fault hits (``None``: no HTTP error, or it depends on parameters).
    expected_status: int | None = None
    #: The error text the site puts with that status, where the ConfigMgr documentation names one.
    expected_reason: str | None = None
    default_duration: float = DEFAULT_DURATION

    def param(self, name: str) -> ParamSpec:
        """The parameter called ``name``; raises :class:`FaultError` naming it when the fault has none."""
        for spec in self.params:
            if spec.name == name:
                return spec
        raise FaultError(f"unknown parameter {name!r} for fault {self.name!r}")

    def resolve_role(self, role: str | None) -> str:
        """The role to target: ``role`` after checking it, or the default role when ``role`` is None."""
        if role is None:
            return self.default_role
        if role not in ROLES:
            raise FaultError(f"unknown role {shown_value(role)} (roles: {', '.join(ROLES)})")
        if role not in self.roles:
            raise FaultError(f"fault {self.name!r} cannot target role {shown_value(role)} "
                             f"(it can target: {', '.join(self.roles)})")
        return role

    def resolve_params(self, params: Mapping[str, object] | None) -> dict[str, ParamValue]:
        """All parameters with defaults filled in, after checking each given value and refusing unknown names."""
        given = dict(params or {})
        known = {p.name for p in self.params}
        for key in given:
            if key not in known:
                allowed = ", ".join(sorted(known)) or "none"
                raise FaultError(f"unknown parameter {shown_value(key)} for fault {self.name!r} (parameters: {allowed})")
        return {p.name: p.coerce(self.name, given[p.name]) if p.name in given else p.default for p in self.params}

    def to_dict(self) -> dict[str, Any]:
        """The fault as JSON-ready data for the control API and the UI."""
        return {
            "name": self.name,
            "roles": list(self.roles),
            "default_role": self.default_role,
            "description": self.description,
            "expected_outcome": self.expected_outcome,
            "expected_status": self.expected_status,
            "expected_reason": self.expected_reason,
            "default_duration": self.default_duration,
            "params": [p.to_dict() for p in self.params],
        }


@dataclass(frozen=True, slots=True)
class DeviceFault:
    """A client-side fault, set per simulated device; listed here so every fault name is validated in one place."""

    name: str
    description: str
    expected_outcome: str

    def to_dict(self) -> dict[str, Any]:
        """The device fault as JSON-ready data."""
        return {"name": self.name, "description": self.description, "expected_outcome": self.expected_outcome}


def _latency(name: str, default: float, description: str) -> ParamSpec:
    return ParamSpec(name, "float", default, description, minimum=0, maximum=600_000)


_SPECS = (
    FaultSpec(
        "crl_unreachable", ("crl",), "crl",
        "The CRL distribution point refuses or drops connections.",
        "Devices that check revocation fail TLS validation (CERT_REV_FAILED, 0x1; WinHTTP 12175); "
        "devices installed with /NoCRLCheck continue.",
    ),
    FaultSpec(
        "crl_expired", ("crl",), "crl",
        "The published CRL has a nextUpdate in the past.",
        "Devices that check revocation treat the stale CRL as offline and fail TLS validation; /NoCRLCheck devices continue.",
    ),
    FaultSpec(
        "crl_slow", ("crl",), "crl",
        "The CRL distribution point answers after a delay.",
        "The first CMG call of a checking device is slower by the delay and succeeds; /NoCRLCheck devices are unaffected.",
        (_latency("latency_ms", 2000.0, "delay before the CRL is served, in ms"),),
    ),
    FaultSpec(
        "cmg_cert_revoked", ("crl",), "crl",
        "The CMG server certificate's serial number is listed in the CRL.",
        "Devices that check revocation fail TLS validation (CERT_REVOKED, 0x4); /NoCRLCheck devices continue, "
        "which is the risk that switch brings.",
    ),
    FaultSpec(
        "cp_cert_revocation_offline", ("cp",), "cp",
        "The connection point cannot check revocation of its own client-authentication certificate.",
        "MP-bound requests get 403 CMGConnector_Clientcertificaterequired (error 0x87d0027e), for every device.",
        expected_status=403, expected_reason="CMGConnector_Clientcertificaterequired",
    ),
    FaultSpec(
        "tenant_not_onboarded", ("cmg", "mp", "sts"), "cmg",
        "The site does not know the device's Microsoft Entra tenant.",
        "AADAuthInfo returns no properties and ccmsetup stops; CCM_STS refuses tokens from that tenant.",
        (ParamSpec("tenant_id", "guid", None, "the tenant treated as not onboarded; unset: every tenant"),),
    ),
    FaultSpec(
        "entra_token_expired", ("entra",), "entra",
        "Microsoft Entra ID hands out tokens that are already expired.",
        "CCM_STS refuses with 401 (PreAuth token validation failed, IDX10223); the CMG forwards no request with that token"
        "; a registration that carries such a token is rejected by the MP (403 MP_Registration_AAD_Token_Invalid).",
        expected_status=401,
    ),
    FaultSpec(
        "entra_bad_signature", ("entra",), "entra",
        "Microsoft Entra ID hands out tokens whose signature does not verify.",
        "CCM_STS refuses with 401 (PreAuth token validation failed, IDX105xx signature error)"
        "; a registration that carries such a token is rejected by the MP (403 MP_Registration_AAD_Token_Invalid).",
        expected_status=401,
    ),
    FaultSpec(
        "entra_wrong_audience", ("entra",), "entra",
        "Microsoft Entra ID hands out tokens for another resource.",
        "CCM_STS refuses with 401 (PreAuth token validation failed, IDX10214)"
        "; a registration that carries such a token is rejected by the MP (403 MP_Registration_AAD_Token_Invalid).",
        expected_status=401,
    ),
    FaultSpec(
        "entra_wrong_issuer", ("entra",), "entra",
        "Microsoft Entra ID hands out tokens from an issuer the site does not trust.",
        "CCM_STS refuses with 401 (PreAuth token validation failed, IDX10205)"
        "; a registration that carries such a token is rejected by the MP (403 MP_Registration_AAD_Token_Invalid).",
        expected_status=401,
    ),
    FaultSpec(
        "sts_unavailable", ("cp",), "cp",
        "CCM_STS cannot be reached behind the connection point.",
        "Token requests get 401 CMGConnector_Unauthorized; ccmsetup logs RetrieveTokenFromStsServerImpl failed "
        "with error 0x87d0027e.",
        expected_status=401, expected_reason="CMGConnector_Unauthorized",
    ),
    FaultSpec(
        "sts_error", ("sts",), "sts",
        "CCM_STS fails while issuing a token.",
        "Token requests get 500 CMGConnector_InternalServerError.",
        expected_status=500, expected_reason="CMGConnector_InternalServerError",
    ),
    FaultSpec(
        "ccm_token_expired", ("cmg", "sts"), "cmg",
        "CCM tokens stop being accepted early (at the CMG) or are issued already expired (at CCM_STS).",
        "The CMG answers 401 CMGService_Invalid_Token; the client renews its token at CCM_STS and retries once.",
        expected_status=401, expected_reason="CMGService_Invalid_Token",
    ),
    FaultSpec(
        "ccm_token_lifetime", ("sts",), "sts",
        "CCM_STS issues tokens with a shorter lifetime than the configured 8 hours.",
        "Renewal storms: the share of token-renewal traffic rises as the lifetime falls; requests still succeed.",
        (ParamSpec("seconds", "float", 30.0,
                   "CCM token lifetime in real seconds (not time-scaled, so a schedule can say '30 s')",
                   minimum=1, maximum=8 * 3600),),
    ),
    FaultSpec(
        "latency", PROXY_ROLES, "cmg",
        "Requests wait before they are handled.",
        "Slower but successful; beyond that the client's own timeouts decide.",
        (_latency("mean_ms", 500.0, "mean added delay in ms"),
         _latency("jitter_ms", 0.0, "the delay varies uniformly by up to this many ms either side of the mean")),
    ),
    FaultSpec(
        "http_error", PROXY_ROLES, "cmg",
        "Requests are answered with an HTTP error instead of being handled.",
        "The client retries with back-off where the real client does (registration re-attempts, policy on the next cycle).",
        (ParamSpec("status", "int", 503, "HTTP status to answer with", minimum=400, maximum=599),
         ParamSpec("status_text", "text", None, "status text (reason phrase); unset: the standard phrase")),
    ),
    FaultSpec(
        "reset", PROXY_ROLES, "cmg",
        "The TCP connection is reset instead of answering.",
        "The client sees a connection reset and retries.",
    ),
    FaultSpec(
        "cp_disconnected", ("cmg",), "cmg",
        "The connection points' channels to the CMG drop and the CMG refuses them while the fault is on (over the "
        "direct HTTPS hop: the CMG acts as if no connection point were there).",
        "Requests the CMG must forward get 503 with a status text naming the missing connection point.",
        expected_status=503,
    ),
    FaultSpec(
        "mp_slow", ("mp",), "mp",
        "The management point answers after a delay.",
        "Slower answers; where the delay passes a timeout, the connection point reports the failure and the client retries.",
        (_latency("latency_ms", 2000.0, "added delay in ms"),),
    ),
    FaultSpec(
        "mp_down", ("mp",), "mp",
        "The management point refuses requests.",
        "The management point answers 503 MP unavailable; the connection point reports the failure and the client retries.",
        expected_status=503, expected_reason="MP unavailable",
    ),
    FaultSpec(
        "bandwidth", PROXY_ROLES + ("storage",), "cmg",
        "Response bodies are sent no faster than a set rate.",
        "Content downloads slow down in proportion to their size; they still complete.",
        (ParamSpec("kib_per_s", "float", 64.0, "response rate in KiB/s", minimum=1, maximum=1024 * 1024),),
    ),
    FaultSpec(
        "over_capacity", ("cmg",), "cmg",
        "More clients are active than the CMG instances are sized for.",
        "Above capacity the CMG still answers, with added latency that grows with the excess; no refusals.",
        (ParamSpec("clients_per_instance", "int", 6000, "clients one CMG VM instance serves without delay",
                   minimum=1, maximum=100_000),
         ParamSpec("capacity_clients", "int", None, "total capacity; unset: clients_per_instance x CMG instances",
                   minimum=1, maximum=10_000_000),
         ParamSpec("ms_per_excess_client", "float", 0.05, "added delay in ms per client above capacity",
                   minimum=0, maximum=1000),
         ParamSpec("max_delay_ms", "float", 30_000.0, "cap on the added delay in ms", minimum=0, maximum=600_000),
         ParamSpec("window_s", "float", 60.0, "a client counts as active for this many real seconds after a request",
                   minimum=1, maximum=3600)),
    ),
    # --- signed policy traffic (the MP checks signatures against the certificate each client registered) ---
    FaultSpec(
        "policy_signature_mismatch", ("mp",), "mp",
        "The MP holds another signing key for every client than the one it signs with, as after a client changed its "
        "key without registering again.",
        "Policy assignment requests and authenticated policy downloads are refused with 403 MP_Signature_Invalid; "
        "install and registration still succeed, and the next poll after the fault ends gets its policy.",
        expected_status=403, expected_reason=MP_SIGNATURE_INVALID,
    ),
    FaultSpec(
        "client_unknown", ("mp",), "mp",
        "The MP does not find the requesting client among the registered ones (a lost or deleted registration).",
        "Policy assignment requests and authenticated policy downloads are refused with 403 MP_Client_Not_Registered; "
        "install and registration still succeed.",
        expected_status=403, expected_reason=MP_NOT_REGISTERED,
    ),
    # --- content from the content-enabled CMG's storage (signed URLs) -------------------------------------------------
    FaultSpec(
        "storage_slow", ("storage",), "storage",
        "The CMG's cloud storage answers content downloads after a delay.",
        "Content downloads from storage take longer and still complete; past the client's timeout the download fails "
        "with timeout after its retries.",
        (_latency("latency_ms", 2000.0, "added delay in ms"),),
    ),
    FaultSpec(
        "signed_url_expired", ("storage", "cmg"), "storage",
        "Signed content URLs are expired when used: storage counts every URL as expired, or the CMG hands out URLs "
        "that expired before they were issued.",
        "Storage answers 403 AuthenticationFailed; the client asks the CMG for a new URL once and, refused again, "
        "fails the content download with storage.403.",
        expected_status=403, expected_reason="AuthenticationFailed",
    ),
    FaultSpec(
        "storage_unreachable", ("storage",), "storage",
        "The CMG's cloud storage cannot be reached: connections are reset.",
        "Content downloads fail with a connection reset; the client retries with back-off and then fails the "
        "content download with reset. The CMG's own endpoints keep answering.",
    ),
    FaultSpec(
        "content_hash_mismatch", ("storage",), "storage",
        "The content the CMG's storage serves is not the content the CMG announced: the same size, other bytes (as "
        "after content changed without being distributed again, or was altered on its way).",
        "The download completes, but the client finds its SHA-256 is not the announced hash and does not install it: "
        "content.hash_mismatch at the content download, error 0x80091007. The CMG's own endpoints keep answering.",
    ),
    # --- token-authenticated devices (bulk registration token) -------------------------------------------------------
    FaultSpec(
        "bulk_token_expired", ("cmg",), "cmg",
        "The bulk registration token devices install with is past its lifetime (3 days by default, at most 7).",
        "The CMG answers 401 CMGService_Invalid_Token to devices still installing or registering with it (cmg.401: "
        "a bulk token cannot be renewed by the device); registered devices with their client-unique token continue.",
        expected_status=401, expected_reason="CMGService_Invalid_Token",
    ),
    FaultSpec(
        "bulk_token_revoked", ("cmg",), "cmg",
        "The administrator blocked the bulk registration token.",
        "As for an expired bulk token: 401 CMGService_Invalid_Token for devices still using it (cmg.401); devices "
        "that already hold their client-unique token continue.",
        expected_status=401, expected_reason="CMGService_Invalid_Token",
    ),
)

#: Every server-side fault by name; the registry only accepts these.
CATALOGUE: Mapping[str, FaultSpec] = MappingProxyType({spec.name: spec for spec in _SPECS})

#: The client-side faults of docs/faults.md, applied per simulated device by the harness, not by this registry.
DEVICE_FAULTS: tuple[DeviceFault, ...] = (
    DeviceFault(
        "wpj_missing", "The device has no workplace-join certificate.",
        "No Microsoft Entra token can be requested; a device with a PKI client certificate installs as a PKI client, "
        "any other stops in ccmsetup before CCM_STS.",
    ),
    DeviceFault(
        "wam_device_token_error", "The WAM device token request fails (0xd0090016 or 0x800703f0).",
        "The client falls back to a user token and succeeds; CCM_STS logs TokenType UDA.",
    ),
    DeviceFault(
        "no_user_token", "Both the device and the user token requests fail.",
        "ccmsetup does not continue.",
    ),
    DeviceFault(
        "root_ca_missing", "The root CA of the CMG server certificate is not in the device's store.",
        "TLS fails at the first CMG call with no HTTP status (WinHTTP 12175, INVALID_CA 0x8).",
    ),
    DeviceFault(
        "clock_skew", "The device clock is off by a number of seconds.",
        "Beyond the 300 s allowance tokens are rejected as expired or not yet valid: 401 from CCM_STS (IDX10223 / IDX10222).",
    ),
)


def get_spec(name: object) -> FaultSpec:
    """The catalogue entry for ``name``; raises :class:`UnknownFault` naming it when there is none."""
    spec = CATALOGUE.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownFault(f"unknown fault {shown_value(name)}")
    return spec


def catalogue_dict() -> dict[str, Any]:
    """The whole catalogue as JSON-ready data: server-side faults and device faults."""
    return {
        "faults": [spec.to_dict() for spec in CATALOGUE.values()],
        "device_faults": [fault.to_dict() for fault in DEVICE_FAULTS],
    }
