"""The CCM token request body (ours): a JWT-bearer grant for urn:sccm:service, read strictly."""

from __future__ import annotations

import pytest

from cmg_protocol.sts_request import GRANT_TYPE, MAX_BODY_BYTES, StsRequest, StsRequestError

REQUEST = StsRequest(assertion="aaa.bbb.ccc", client_id="GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
                     agent_version="5.00.8968.1000", client_host="cmgdev0000001.contoso.com")


def test_a_request_round_trips_through_its_body() -> None:
    body = REQUEST.to_body()
    assert body.startswith(b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=aaa.bbb.ccc&")
    assert b"&resource=urn%3Asccm%3Aservice&" in body
    assert StsRequest.from_body(body) == REQUEST


def test_before_registration_the_client_id_is_empty() -> None:
    request = StsRequest(assertion="t", client_id="", agent_version="v", client_host="h")
    assert StsRequest.from_body(request.to_body()).client_id == ""


def _form(**fields: str) -> bytes:
    base = {"grant_type": GRANT_TYPE, "assertion": "t", "resource": "urn:sccm:service"}
    return "&".join(f"{k}={v}" for k, v in {**base, **fields}.items()).encode()


@pytest.mark.parametrize(("body", "reason"), [
    (_form(grant_type="password"), "grant_type must be"),
    (_form(resource="https://ConfigMgrService"), "resource must be urn:sccm:service"),
    (_form(assertion=""), "carries no assertion"),
    (_form(scope="x"), "unknown field 'scope'"),
    (_form() + b"&assertion=u", "the field 'assertion' twice"),
    ("assertion=\u00e9".encode(), "not an ASCII form"),
    (b"grant_type", "not an ASCII form"),
    (b"x" * (MAX_BODY_BYTES + 1), f"over {MAX_BODY_BYTES}"),
])
def test_a_body_that_is_not_a_token_request_is_refused_by_name(body: bytes, reason: str) -> None:
    with pytest.raises(StsRequestError, match=reason):
        StsRequest.from_body(body)


def test_a_body_at_the_size_limit_is_read() -> None:
    body = _form(client_host="h" * 10)
    padded = body + b"&client_id=" + b"x" * (MAX_BODY_BYTES - len(body) - len(b"&client_id="))
    assert len(padded) == MAX_BODY_BYTES
    assert StsRequest.from_body(padded).client_id.startswith("xxx")
