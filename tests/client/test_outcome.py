"""Outcomes, reason codes and the step table."""

from __future__ import annotations

import pytest

from harness.client import outcome as oc
from harness.client.outcome import Outcome, OutcomeError, TrailEntry, failure, format_step_table


@pytest.mark.parametrize(("reason", "code", "flags"), [
    (oc.TLS_INVALID_CA, 12175, 0x8),
    (oc.TLS_REVOCATION_OFFLINE, 12175, 0x1),
    (oc.TLS_REVOKED, 12175, 0x4),
    (oc.TIMEOUT, 12002, None),
    (oc.RESET, 12030, None),
])
def test_transport_failures_carry_the_winhttp_code_and_flags(reason: str, code: int, flags: int | None) -> None:
    """A TLS failure is WinHTTP 12175 with the status flag a Windows client reports."""
    result = failure(reason, step="aad_info")
    assert (result.error_code, result.winhttp_flags) == (code, flags)


def test_http_failures_keep_their_own_error_code() -> None:
    """A CMGConnector failure keeps 0x87d0027e and has no WinHTTP flags."""
    result = failure(oc.STS_401, step="ccm_token", error_code=oc.E_CMG_CONNECTOR)
    assert (result.error_hex(), result.winhttp_flags) == ("0x87d0027e", None)


@pytest.mark.parametrize("code", ["http.404", "http.599", oc.MP_401, oc.AAD_NO_WPJ])
def test_known_reason_codes_are_accepted(code: str) -> None:
    """Fixed codes and http.<status> codes are reason codes."""
    assert oc.is_reason(code)


@pytest.mark.parametrize("code", ["http.4040", "http.abc", "http.99", "tls.broken", ""])
def test_unknown_reason_codes_are_refused(code: str) -> None:
    """A failed outcome cannot carry a reason code the harness does not hand out."""
    with pytest.raises(OutcomeError):
        Outcome(success=False, step="x", reason=code)


def test_success_carries_no_reason() -> None:
    """Success and a reason code contradict each other."""
    with pytest.raises(OutcomeError, match="cmg.403"):
        Outcome(success=True, reason=oc.CMG_403)


def test_http_reason_refuses_non_statuses() -> None:
    """http_reason takes HTTP statuses only."""
    assert oc.http_reason(502) == "http.502"
    with pytest.raises(OutcomeError, match="42"):
        oc.http_reason(42)


def test_flag_names_spell_the_winhttp_constants() -> None:
    """Flags 0x9 name the revocation-offline and invalid-CA constants."""
    assert oc.flag_names(0x9) == ["WINHTTP_CALLBACK_STATUS_FLAG_CERT_REV_FAILED",
                                  "WINHTTP_CALLBACK_STATUS_FLAG_INVALID_CA"]


def test_step_table_lists_every_exchange_and_the_verdict() -> None:
    """The CLI's table shows step, URI, status, ms and result per exchange, then the failure with its codes."""
    trail = (TrailEntry("aad_info", "/CCM_Proxy_ServerAuth/AADAuthInfo", 200, 12.34, "ok"),
             TrailEntry("ccm_token", "/CCM_Proxy_ServerAuth/1/CCM_STS", None, 3.0, oc.TLS_REVOKED))
    table = format_step_table(failure(oc.TLS_REVOKED, step="ccm_token", trail=trail, detail="certificate revoked"))
    lines = table.splitlines()
    assert lines[0].split() == ["step", "request", "URI", "status", "ms", "outcome"]
    assert lines[2].split() == ["aad_info", "/CCM_Proxy_ServerAuth/AADAuthInfo", "200", "12.3", "ok"]
    assert lines[3].split() == ["ccm_token", "/CCM_Proxy_ServerAuth/1/CCM_STS", "-", "3.0", "tls.revoked"]
    assert lines[4] == "outcome: failed at ccm_token: tls.revoked (error 12175, flags 0x4)"
    assert lines[5] == "detail: certificate revoked"


def test_outcome_as_json_data() -> None:
    """to_dict gives JSON-ready values: hex codes and trail rows as objects."""
    data = failure(oc.TLS_INVALID_CA, step="aad_info",
                   trail=(TrailEntry("aad_info", "/x", None, 1.0, oc.TLS_INVALID_CA),)).to_dict()
    assert data["winhttp_flags"] == "0x8" and data["error_code"] == "12175"
    assert data["trail"] == [{"step": "aad_info", "name": "/x", "status": None, "ms": 1.0, "result": "tls.invalid_ca"}]


def test_the_mps_signature_and_registration_refusals_have_their_own_reasons() -> None:
    """403 MP_Signature_Invalid and 403 MP_Client_Not_Registered are the MP's, not the CMG's."""
    from harness.client.events import STEP_POLICY_ASSIGNMENTS, Response, classify

    assert classify(STEP_POLICY_ASSIGNMENTS, Response(403, b"", reason="MP_Signature_Invalid")) == "mp.signature_invalid"
    assert classify(STEP_POLICY_ASSIGNMENTS, Response(403, b"", reason="MP_Client_Not_Registered")) == "mp.not_registered"
    assert classify(STEP_POLICY_ASSIGNMENTS, Response(403, b"", reason="CMGConnector_Forbidden")) == "cmg.403"


def test_the_mps_refusal_of_a_registrations_entra_token_is_a_rejected_registration() -> None:
    """403 MP_Registration_AAD_Token_Invalid at registration: registration.rejected, not the proxy-leak mp.401; the
    same status with another reason stays cmg.403."""
    from cmg_protocol.statuses import MP_REGISTRATION_TOKEN_INVALID
    from harness.client.events import STEP_REGISTRATION, Response, classify

    assert classify(STEP_REGISTRATION, Response(403, b"", MP_REGISTRATION_TOKEN_INVALID)) == "registration.rejected"
    assert classify(STEP_REGISTRATION, Response(403, b"", "Forbidden")) == "cmg.403"
