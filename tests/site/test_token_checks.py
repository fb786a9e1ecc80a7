"""The site's one token rule for CCM-token endpoints: a CCM token, else (where allowed) an Entra token."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cmg_protocol.tokens import TokenRejected
from mock_site.token_checks import verify_ccm_or_entra


class Ccm:
    def __init__(self, kind: str | None) -> None:
        self.kind = kind

    def verify(self, token: str) -> dict[str, Any]:
        if self.kind is None:
            return {"smsid": "GUID:1"}
        raise TokenRejected("IDX", "no", self.kind)


class Entra:
    def __init__(self) -> None:
        self.calls = 0

    async def verify(self, token: str) -> dict[str, Any]:
        self.calls += 1
        return {"deviceid": "d"}


def _run(ccm_kind: str | None, *, entra_allowed: bool = True) -> tuple[tuple[str, dict[str, Any]], int]:
    entra = Entra()
    result = asyncio.run(verify_ccm_or_entra("t", Ccm(ccm_kind), entra, entra_allowed=entra_allowed))  # type: ignore[arg-type]
    return result, entra.calls


def test_a_valid_ccm_token_is_taken_without_asking_entra() -> None:
    """A CCM token that verifies is the answer; the Entra verifier is not consulted."""
    assert _run(None) == (("ccm", {"smsid": "GUID:1"}), 0)


@pytest.mark.parametrize("kind", ["issuer", "unknown_key", "audience"])
def test_a_foreign_token_is_verified_as_an_entra_token(kind: str) -> None:
    """A token of another issuer, key or audience is tried as an Entra token."""
    assert _run(kind) == (("entra", {"deviceid": "d"}), 1)


@pytest.mark.parametrize("kind", ["expired", "signature", "algorithm", "malformed"])
def test_a_bad_ccm_token_is_not_retried_as_entra(kind: str) -> None:
    """An expired or forged CCM token stays refused: it never gets a second chance as an Entra token."""
    with pytest.raises(TokenRejected):
        _run(kind)


def test_entra_tokens_are_refused_where_not_allowed() -> None:
    """With entra_allowed=False a foreign token is refused instead of being tried as Entra."""
    with pytest.raises(TokenRejected):
        _run("issuer", entra_allowed=False)
