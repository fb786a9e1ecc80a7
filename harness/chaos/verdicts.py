"""Expected versus unexpected: each device's outcome judged against what its traits and the active faults predict.

The rules are docs/faults.md's expected outcomes. A device's own traits decide its outcome outright (no root CA ⇒
``tls.invalid_ca``; no WPJ certificate and no PKI certificate ⇒ ``aad.no_wpj``; …). A server-side fault that was on
during the device's life widens what is acceptable (a device that checks CRLs may fail ``tls.revocation_offline``
while the CRL distribution point is down, or may still succeed with a CRL it cached earlier). Some outcomes are never
acceptable: ``mp.401`` means a proxy forwarded an invalid token to the MP, which a CMG must not do.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.client import outcome as oc
from harness.client.device import WAM_USER_FAILS_TOO, DeviceProfile
from mock_site.manifest import SiteManifest

OK = "ok"
#: Joins the faults that were on together during one outcome: the outcome is counted once, under all of them.
OVERLAP = " + "
#: Outcomes that are unexpected whatever the faults: the system under test did something a CMG must never do.
NEVER_EXPECTED = {
    oc.MP_401: "a proxy forwarded a request with an invalid token to the MP (the CMG must refuse it at the edge)",
    oc.BAD_REPLY: "the client received a reply it could not read",
}

#: For each server-side fault, the failure reasons it may cause for a device that is exposed to it.
_FAULT_REASONS: Mapping[str, frozenset[str]] = {
    "crl_unreachable": frozenset({oc.TLS_REVOCATION_OFFLINE}),
    "crl_expired": frozenset({oc.TLS_REVOCATION_OFFLINE}),
    "crl_slow": frozenset({oc.TIMEOUT}),
    "cmg_cert_revoked": frozenset({oc.TLS_REVOKED}),
    "cp_cert_revocation_offline": frozenset({oc.CMG_403}),
    # An Entra token refused at CCM_STS (sts.401), or, fetched anew for registration, refused by the MP there.
    "tenant_not_onboarded": frozenset({oc.AAD_TENANT_NOT_ONBOARDED, oc.STS_401, oc.REGISTRATION_REJECTED}),
    "entra_token_expired": frozenset({oc.STS_401, oc.REGISTRATION_REJECTED}),
    "entra_bad_signature": frozenset({oc.STS_401, oc.REGISTRATION_REJECTED}),
    "entra_wrong_audience": frozenset({oc.STS_401, oc.REGISTRATION_REJECTED}),
    "entra_wrong_issuer": frozenset({oc.STS_401, oc.REGISTRATION_REJECTED}),
    "sts_unavailable": frozenset({oc.STS_401}),
    "sts_error": frozenset({oc.STS_500}),
    # At the CMG the client renews and retries once, so it succeeds; tokens issued expired at CCM_STS fail the retry too.
    "ccm_token_expired": frozenset(),
    "ccm_token_lifetime": frozenset(),
    # Beyond the connection point's upstream timeout a slow hop becomes 504 (the client has no code for it: http.504).
    "latency": frozenset({oc.TIMEOUT, "http.504"}),
    "mp_slow": frozenset({oc.TIMEOUT, "http.504"}),
    "bandwidth": frozenset({oc.TIMEOUT}),
    "over_capacity": frozenset({oc.TIMEOUT, "http.504"}),
    "reset": frozenset({oc.RESET, oc.CMG_503}),
    "cp_disconnected": frozenset({oc.CMG_503}),
    # CCM_STS lives on the MP: the connection point turns its 503 into 500 CMGConnector_InternalServerError.
    "mp_down": frozenset({oc.CMG_503, oc.STS_500}),
    "policy_signature_mismatch": frozenset({oc.MP_SIGNATURE_INVALID}),
    "client_unknown": frozenset({oc.MP_NOT_REGISTERED}),
    # Content from the CMG's storage: a slow storage times out, a refused URL is storage.403 after one new URL, an
    # unreachable storage resets the download, changed content is not installed.
    "storage_slow": frozenset({oc.TIMEOUT}),
    "signed_url_expired": frozenset({oc.STORAGE_403}),
    "storage_unreachable": frozenset({oc.RESET, oc.CONNECT}),
    "content_hash_mismatch": frozenset({oc.CONTENT_HASH_MISMATCH}),
    # Only devices that install with a bulk registration token hold one (see _BULK_TOKEN_FAULTS).
    "bulk_token_expired": frozenset({oc.CMG_401}),
    "bulk_token_revoked": frozenset({oc.CMG_401}),
    "http_error": frozenset({oc.CMG_401, oc.CMG_403, oc.CMG_503, oc.STS_401, oc.STS_500, oc.REGISTRATION_REJECTED,
                             oc.AAD_NO_TOKEN}),
}
#: Faults that touch only devices installed with a bulk registration token.
_BULK_TOKEN_FAULTS = frozenset({"bulk_token_expired", "bulk_token_revoked"})
#: Faults whose effect a device that skips revocation checks (/NoCRLCheck) never sees.
_CRL_FAULTS = frozenset({"crl_unreachable", "crl_expired", "crl_slow", "cmg_cert_revoked"})


@dataclass(frozen=True, slots=True)
class FaultWindow:
    """A server-side fault that was on at ``role`` from ``start`` to ``end`` (epoch seconds)."""

    name: str
    role: str
    start: float
    end: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def overlaps(self, start: float, end: float) -> bool:
        return self.start <= end and start <= self.end


#: Faults that delay or repeat a device's requests: slow or refusing hops, and the retries after their back-off.
_DELAYING_FAULTS = frozenset({"latency", "mp_slow", "mp_down", "http_error", "reset", "cp_disconnected", "bandwidth",
                              "over_capacity", "sts_unavailable", "sts_error"})
#: Under this many real seconds of Entra token life (time compressed 1,000 times or more), a token request that such a
#: fault delays or repeats can outlive the token it carries: CCM_STS then refuses it (sts.401), or the MP the
#: registration that carries it. Real tokens live an hour or more and no real delay of this kind outlives them, so the
#: refusal is an artefact of compressed time, and expected only there.
COMPRESSED_ENTRA_TOKEN_S = 5.0


@dataclass(frozen=True, slots=True)
class VerdictSettings:
    """Site facts the rules need: the token validation allowance, Entra token lifetime and the onboarded tenants."""

    onboarded_tenants: frozenset[str]
    leeway: float = 300.0
    entra_token_lifetime: float = 75 * 60.0
    #: A device's clock skew is ConfigMgr time: divided by this it compares with the (real-second) leeway.
    time_scale: float = 1.0

    @classmethod
    def from_manifest(cls, manifest: SiteManifest) -> VerdictSettings:
        tenants = manifest.onboarded_tenant_ids if manifest.tenants else (manifest.tenant_id,)
        # The site scales its validation leeway with its clock; a manifest from before it said so carries none.
        leeway = manifest.token_leeway_s if manifest.token_leeway_s is not None else 300.0 / manifest.time_scale
        return cls(onboarded_tenants=frozenset(tenant.lower() for tenant in tenants), leeway=leeway,
                   entra_token_lifetime=75 * 60.0 / manifest.time_scale, time_scale=manifest.time_scale)


@dataclass(frozen=True, slots=True)
class Expectation:
    """The outcomes that are fine for one device's life, and why."""

    allowed: frozenset[str]
    causes: tuple[str, ...]
    required: str  # the outcome the device's own traits decide ("ok" when they decide nothing)

    def accepts(self, outcome: str) -> bool:
        if outcome in NEVER_EXPECTED:
            return False
        if outcome in self.allowed:
            return True
        # http_error may answer any status; the client names those it has no code for ``http.<status>``.
        return outcome.startswith("http.") and "http_error" in self.causes


@dataclass(frozen=True, slots=True)
class Verdict:
    """One device life judged: ``kind`` is expected_success, expected_failure, unexpected_failure or unexpected_success."""

    outcome: str
    expected: bool
    kind: str
    expectation: Expectation
    explanation: str


def device_requirement(profile: DeviceProfile, settings: VerdictSettings) -> tuple[str, str]:
    """The outcome a device's own traits force, with the trait that forces it (``("ok", "")`` when none does)."""
    if not profile.root_ca_present:
        return oc.TLS_INVALID_CA, "root_ca_missing"
    if profile.takes_pki_path or profile.takes_token_path:
        return OK, ""  # neither needs Entra ID: its tenant, WPJ, WAM and clock do not decide
    if profile.tenant_id.lower() not in settings.onboarded_tenants:
        return oc.AAD_TENANT_NOT_ONBOARDED, "tenant_not_onboarded"
    if not profile.wpj_cert:
        return oc.AAD_NO_WPJ, "wpj_missing"
    if profile.wam == WAM_USER_FAILS_TOO:
        return oc.AAD_NO_TOKEN, "no_user_token"
    skew = profile.clock_skew / settings.time_scale
    if skew > settings.leeway or skew < -(settings.entra_token_lifetime + settings.leeway):
        return oc.STS_401, "clock_skew"
    return OK, ""


def _other_tenant(window: FaultWindow, profile: DeviceProfile) -> bool:
    """True when ``window`` concerns one tenant and it is not the device's (tenant ids compare without case, as the
    site compares them)."""
    tenant = str(window.params.get("tenant_id") or "").lower()
    return tenant != "" and tenant != profile.tenant_id.lower()


def expect(profile: DeviceProfile, *, life_start: float, life_end: float, windows: Iterable[FaultWindow],
           settings: VerdictSettings) -> Expectation:
    """What is acceptable for a device that lived from ``life_start`` to ``life_end`` under ``windows``."""
    required, trait = device_requirement(profile, settings)
    allowed = {required}
    causes = [trait] if trait else []
    for window in windows:
        if not window.overlaps(life_start, life_end):
            continue
        if window.name in _CRL_FAULTS and profile.nocrlcheck:
            continue
        if window.name == "tenant_not_onboarded" and _other_tenant(window, profile):
            continue
        if window.name in _BULK_TOKEN_FAULTS and not profile.bulk_token:
            continue
        reasons = set(_FAULT_REASONS.get(window.name, ()))
        if window.name == "ccm_token_expired" and window.role == "sts":
            reasons.add(oc.CMG_401)
        if window.name in _DELAYING_FAULTS and settings.entra_token_lifetime < COMPRESSED_ENTRA_TOKEN_S:
            reasons |= {oc.STS_401, oc.REGISTRATION_REJECTED}
        if window.name in _FAULT_REASONS:
            causes.append(window.name)
        # The device's own required outcome stays allowed (it is in ``allowed`` from the start): a fault can stop the
        # device before its own trait does, e.g. a reset at the first request.
        allowed |= reasons
    return Expectation(allowed=frozenset(allowed), causes=tuple(dict.fromkeys(causes)), required=required)


def judge(profile: DeviceProfile, outcome: str | None, *, life_start: float, life_end: float,
          windows: Iterable[FaultWindow], settings: VerdictSettings) -> Verdict:
    """Judge one device life; ``outcome`` is its reason code, or None (or "ok") for success."""
    outcome = outcome or OK
    expectation = expect(profile, life_start=life_start, life_end=life_end, windows=windows, settings=settings)
    expected = expectation.accepts(outcome)
    if outcome == OK:
        kind = "expected_success" if expected else "unexpected_success"
    else:
        kind = "expected_failure" if expected else "unexpected_failure"
    if outcome in NEVER_EXPECTED:
        explanation = NEVER_EXPECTED[outcome]
    elif expected:
        explanation = f"{outcome} is what {', '.join(expectation.causes) or 'a healthy site'} predicts"
    elif outcome == OK:
        explanation = (f"the device should have failed with {expectation.required} "
                       f"({', '.join(expectation.causes)}) but succeeded")
    else:
        predicted = ", ".join(sorted(expectation.allowed))
        explanation = f"{outcome} is not among the predicted outcomes ({predicted})"
    return Verdict(outcome=outcome, expected=expected, kind=kind, expectation=expectation, explanation=explanation)


def fault_set(causes: Iterable[str]) -> str:
    """The key an outcome is counted under: its causes joined by :data:`OVERLAP` in name order ("none": no cause),
    so the counts per key add up to the number of outcomes."""
    return OVERLAP.join(sorted(set(causes))) or "none"


@dataclass
class VerdictTally:
    """Counts per verdict kind, per set of faults that were on (see :func:`fault_set`) and per reason, plus the first
    examples of each unexpected kind."""

    max_examples: int = 5
    kinds: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    faults: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, verdict: Verdict, *, device: str = "", trail: Sequence[Any] = ()) -> None:
        label = "expected" if verdict.expected else "unexpected"
        self.kinds[verdict.kind] += 1
        self.reasons[verdict.outcome][label] += 1
        self.faults[fault_set(verdict.expectation.causes)][label] += 1
        if not verdict.expected:
            key = f"{verdict.kind}:{verdict.outcome}"
            if len(self.examples[key]) < self.max_examples:
                self.examples[key].append({"device": device, "outcome": verdict.outcome,
                                           "explanation": verdict.explanation,
                                           "trail": [list(entry) for entry in trail]})

    @property
    def unexpected(self) -> int:
        return self.kinds["unexpected_failure"] + self.kinds["unexpected_success"]

    @property
    def expected(self) -> int:
        return self.kinds["expected_success"] + self.kinds["expected_failure"]

    def merge(self, other: Mapping[str, Any]) -> None:
        """Fold in another tally's :meth:`to_dict` (a Locust worker's report)."""
        self.kinds.update(other.get("kinds", {}))
        for reason, counts in other.get("reasons", {}).items():
            self.reasons[reason].update(counts)
        for fault, counts in other.get("faults", {}).items():
            self.faults[fault].update(counts)
        for key, examples in other.get("examples", {}).items():
            room = self.max_examples - len(self.examples[key])
            self.examples[key].extend(examples[:max(room, 0)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected": self.expected,
            "unexpected": self.unexpected,
            "kinds": dict(self.kinds),
            "reasons": {reason: dict(counts) for reason, counts in sorted(self.reasons.items())},
            "faults": {fault: dict(counts) for fault, counts in sorted(self.faults.items())},
            "examples": {key: list(examples) for key, examples in sorted(self.examples.items())},
        }
