"""How a simulated client's life ended: success, or the step that failed with a stable reason code and ConfigMgr error code.

Later work tallies outcomes against the expected outcomes of docs/faults.md, so reason codes are part of the public surface:
they never change spelling. HTTP statuses outside the named cases become ``http.<status>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

# --- reason codes -----------------------------------------------------------------------------------------------------
TLS_INVALID_CA = "tls.invalid_ca"
TLS_REVOCATION_OFFLINE = "tls.revocation_offline"
TLS_REVOKED = "tls.revoked"
AAD_NO_WPJ = "aad.no_wpj"
AAD_NO_TOKEN = "aad.no_token"
AAD_TENANT_NOT_ONBOARDED = "aad.tenant_not_onboarded"
STS_401 = "sts.401"
STS_500 = "sts.500"
CMG_401 = "cmg.401"
CMG_403 = "cmg.403"
CMG_503 = "cmg.503"
#: The CMG's storage refused a signed content URL (expired, not yet valid or a bad signature).
STORAGE_403 = "storage.403"
MP_401 = "mp.401"
#: The MP refused a signature (clientauth hook, ClientTokenSignature) that does not verify with the registered key.
MP_SIGNATURE_INVALID = "mp.signature_invalid"
#: The MP does not know the client asking for policy.
MP_NOT_REGISTERED = "mp.not_registered"
REGISTRATION_REJECTED = "registration.rejected"
TIMEOUT = "timeout"
CONNECT = "connect"
RESET = "reset"
#: A reply the client could not read (bad envelope, bad XML, bad JSON).
BAD_REPLY = "reply.malformed"
#: Downloaded content whose SHA-256 is not the hash its content information announced: not installed.
CONTENT_HASH_MISMATCH = "content.hash_mismatch"

#: Every fixed reason code; ``http.<status>`` codes come on top (see :func:`http_reason`).
REASONS: frozenset[str] = frozenset({
    TLS_INVALID_CA, TLS_REVOCATION_OFFLINE, TLS_REVOKED, AAD_NO_WPJ, AAD_NO_TOKEN, AAD_TENANT_NOT_ONBOARDED, STS_401,
    STS_500, CMG_401, CMG_403, CMG_503, STORAGE_403, MP_401, REGISTRATION_REJECTED, TIMEOUT, CONNECT, RESET, BAD_REPLY,
    MP_SIGNATURE_INVALID, MP_NOT_REGISTERED, CONTENT_HASH_MISMATCH,
})

#: Failures worth trying again after a back-off (network trouble and a CMG that cannot forward right now).
TRANSIENT_REASONS: frozenset[str] = frozenset({TIMEOUT, CONNECT, RESET, CMG_503})

# --- ConfigMgr and WinHTTP error codes ----------------------------------------------------------------------------
#: WinHTTP: the TLS channel could not be set up; the status flags say why.
ERROR_WINHTTP_SECURE_FAILURE = 12175
ERROR_WINHTTP_TIMEOUT = 12002
ERROR_WINHTTP_CANNOT_CONNECT = 12029
ERROR_WINHTTP_CONNECTION_ERROR = 12030
#: WINHTTP_CALLBACK_STATUS_FLAG_* values carried with 12175.
FLAG_CERT_REV_FAILED = 0x1
FLAG_CERT_REVOKED = 0x4
FLAG_INVALID_CA = 0x8
#: ccmsetup's error when the CMG connection point answers for CCM_STS (CMGConnector_* status texts).
E_CMG_CONNECTOR = 0x87D0027E
#: WAM errors the walk-through and the support articles show for a failed Entra device token.
E_WAM_D0090016 = 0xD0090016
E_WAM_800703F0 = 0x800703F0
#: CRYPT_E_HASH_VALUE, "The hash value is not correct": what ConfigMgr reports for content whose hash does not match.
CRYPT_E_HASH_VALUE = 0x80091007

_WINHTTP_TEXT = {
    ERROR_WINHTTP_SECURE_FAILURE: "ERROR_WINHTTP_SECURE_FAILURE",
    ERROR_WINHTTP_TIMEOUT: "ERROR_WINHTTP_TIMEOUT",
    ERROR_WINHTTP_CANNOT_CONNECT: "ERROR_WINHTTP_CANNOT_CONNECT",
    ERROR_WINHTTP_CONNECTION_ERROR: "ERROR_WINHTTP_CONNECTION_ERROR",
}
_FLAG_TEXT = {
    FLAG_CERT_REV_FAILED: "WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED",
    FLAG_CERT_REVOKED: "WINHTTP_CALLBACK_STATUS_FLAG_CERT_REVOKED",
    FLAG_INVALID_CA: "WINHTTP_CALLBACK_STATUS_FLAG_INVALID_CA",
}

#: For each transport-level reason: the WinHTTP error code and the status flags a Windows client would report.
TRANSPORT_CODES: dict[str, tuple[int, int | None]] = {
    TLS_INVALID_CA: (ERROR_WINHTTP_SECURE_FAILURE, FLAG_INVALID_CA),
    TLS_REVOCATION_OFFLINE: (ERROR_WINHTTP_SECURE_FAILURE, FLAG_CERT_REV_FAILED),
    TLS_REVOKED: (ERROR_WINHTTP_SECURE_FAILURE, FLAG_CERT_REVOKED),
    TIMEOUT: (ERROR_WINHTTP_TIMEOUT, None),
    CONNECT: (ERROR_WINHTTP_CANNOT_CONNECT, None),
    RESET: (ERROR_WINHTTP_CONNECTION_ERROR, None),
}


class OutcomeError(ValueError):
    """A reason code or outcome field is not one the harness knows; the message names it."""


def http_reason(status: int) -> str:
    """The reason code of an HTTP status with no more specific meaning at that step."""
    if not 100 <= status <= 599:
        raise OutcomeError(f"HTTP status must be 100..599, got {status!r}")
    return f"http.{status}"


def is_reason(code: str) -> bool:
    """Whether ``code`` is a reason code the harness hands out."""
    if code in REASONS:
        return True
    prefix, _, status = code.partition(".")
    # ASCII digits only: str.isdigit() also takes superscripts (which int() refuses) and other scripts' digits.
    return prefix == "http" and status.isascii() and status.isdigit() and len(status) == 3 and 100 <= int(status) <= 599


def winhttp_text(error_code: int) -> str:
    """The WinHTTP error name ccmhttp logs with a code (``ERROR_WINHTTP_SECURE_FAILURE`` for 12175)."""
    return _WINHTTP_TEXT.get(error_code, f"ERROR_{error_code}")


def flag_names(flags: int) -> list[str]:
    """The WINHTTP_CALLBACK_STATUS_FLAG_* names set in ``flags``."""
    return [name for bit, name in sorted(_FLAG_TEXT.items()) if flags & bit]


class TrailEntry(NamedTuple):
    """One exchange of a life: which step, which request URI, the HTTP status (None: no answer), time, and result."""

    step: str
    name: str
    status: int | None
    ms: float
    result: str  # "ok", or the reason code this exchange failed with


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one client life: success, or the failed step with its reason code and error codes."""

    success: bool
    step: str = ""
    reason: str = ""
    error_code: int | None = None
    winhttp_flags: int | None = None
    detail: str = ""
    trail: tuple[TrailEntry, ...] = ()
    stage: str = ""

    def __post_init__(self) -> None:
        if self.success and self.reason:
            raise OutcomeError(f"a successful outcome carries no reason code, got {self.reason!r}")
        if not self.success and not is_reason(self.reason):
            raise OutcomeError(f"unknown reason code {self.reason!r}")

    @property
    def status(self) -> int | None:
        """The HTTP status of the last exchange (None when it got no HTTP answer, or there was none)."""
        return self.trail[-1].status if self.trail else None

    def error_hex(self) -> str:
        """The error code as ConfigMgr logs print it: hex for HRESULTs, decimal for WinHTTP codes, '' for none."""
        if self.error_code is None:
            return ""
        return str(self.error_code) if self.error_code < 0x10000 else f"0x{self.error_code:08x}"

    def to_dict(self) -> dict[str, object]:
        """JSON-ready data (for ``cmg-harness client --json`` and reports)."""
        return {
            "success": self.success,
            "stage": self.stage,
            "step": self.step,
            "reason": self.reason,
            "error_code": self.error_hex() or None,
            "winhttp_flags": None if self.winhttp_flags is None else f"0x{self.winhttp_flags:x}",
            "detail": self.detail,
            "trail": [entry._asdict() for entry in self.trail],
        }


def failure(reason: str, *, step: str, stage: str = "", detail: str = "", error_code: int | None = None,
            trail: tuple[TrailEntry, ...] = ()) -> Outcome:
    """A failed outcome; transport reasons get their WinHTTP code and status flags filled in."""
    flags: int | None = None
    codes = TRANSPORT_CODES.get(reason)
    if codes is not None:
        error_code, flags = codes if error_code is None else (error_code, codes[1])
    return Outcome(success=False, step=step, reason=reason, error_code=error_code, winhttp_flags=flags, detail=detail,
                   trail=trail, stage=stage)


def format_step_table(outcome: Outcome) -> str:
    """A plain-text table of the life's exchanges (step, request URI, status, ms, outcome) and a closing verdict."""
    header = ("step", "request URI", "status", "ms", "outcome")
    rows = [header]
    for entry in outcome.trail:
        status = "-" if entry.status is None else str(entry.status)
        rows.append((entry.step, entry.name, status, f"{entry.ms:.1f}", entry.result))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    if outcome.success:
        lines.append("outcome: success")
    else:
        codes = []
        if outcome.error_code is not None:
            codes.append(f"error {outcome.error_hex()}")
        if outcome.winhttp_flags is not None:
            codes.append(f"flags 0x{outcome.winhttp_flags:x}")
        extra = f" ({', '.join(codes)})" if codes else ""
        lines.append(f"outcome: failed at {outcome.step}: {outcome.reason}{extra}")
        if outcome.detail:
            lines.append(f"detail: {outcome.detail}")
    return "\n".join(lines)
