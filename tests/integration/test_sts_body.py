"""CCM_STS reads the token request body when there is one: the same Entra token as the Authorization header."""

from __future__ import annotations

import uuid

from cmg_protocol.sts_request import CONTENT_TYPE, StsRequest
from mock_site.testing import SiteClient


def _post(client: SiteClient, bearer: str, body: bytes):  # type: ignore[no-untyped-def]
    return client.http.post(client.server_auth("CCM_STS"), content=body,
                            headers={"Authorization": f"Bearer {bearer}", "Content-Type": CONTENT_TYPE})


def test_a_token_request_with_its_body_gets_a_ccm_token(site_client: SiteClient) -> None:
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    body = StsRequest(assertion=entra, client_id="", agent_version="5.00.8968.1000", client_host="d.contoso.com")
    response = _post(site_client, entra, body.to_body())
    assert response.status_code == 200 and response.json()["token"].count(".") == 2


def test_an_assertion_other_than_the_bearer_token_is_a_bad_request(site_client: SiteClient) -> None:
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    other = site_client.entra_token(device_id=str(uuid.uuid4()))
    body = StsRequest(assertion=other, client_id="", agent_version="v", client_host="h").to_body()
    response = _post(site_client, entra, body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_request",
                               "error_description": "the assertion is not the bearer token of the request"}


def test_a_body_that_is_not_a_token_request_is_a_bad_request(site_client: SiteClient) -> None:
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    response = _post(site_client, entra, b"grant_type=password&assertion=x&resource=urn:sccm:service")
    assert response.status_code == 400 and "grant_type must be" in response.json()["error_description"]
