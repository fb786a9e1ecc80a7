"""Unusual but parseable registration and messaging values get a 4xx with the MP's reason, never a 500 or a stall."""

from __future__ import annotations

import time
import uuid

import pytest

from cmg_protocol import envelope, messages
from cmg_protocol.statuses import MP_BAD_MESSAGE
from mock_site.testing import SiteClient


@pytest.fixture
def tokens(site_client: SiteClient) -> tuple[str, str]:
    entra = site_client.entra_token(device_id=str(uuid.uuid4()))
    return entra, site_client.ccm_token(entra)


@pytest.mark.parametrize("netbios, fq", [("A B", "a.contoso.com"), ("A" * 16, "a.contoso.com"),
                                         ("GOOD", "a" * 256)],
                         ids=["netbios-space", "netbios-16", "fq-256"])
def test_registration_values_the_site_cannot_hold_are_refused(site_client: SiteClient, tokens: tuple[str, str],
                                                              netbios: str, fq: str) -> None:
    entra, ccm = tokens
    response = site_client.register(entra, ccm_token=ccm, netbios_name=netbios, fq_name=fq)
    assert (response.status_code, response.reason_phrase) == (400, MP_BAD_MESSAGE)


def test_a_reply_to_without_an_endpoint_is_refused(site_client: SiteClient, tokens: tuple[str, str]) -> None:
    _, ccm = tokens
    response = site_client.message("MP_LocationManager", messages.SiteInformationRequest("MEM").to_xml(), token=ccm,
                                   reply_to="direct:DEVICE:")
    assert (response.status_code, response.reason_phrase) == (400, MP_BAD_MESSAGE)
    assert "ReplyTo" in response.text


def test_a_client_id_that_is_not_a_guid_is_refused(site_client: SiteClient, tokens: tuple[str, str]) -> None:
    _, ccm = tokens
    response = site_client.policy(ccm, "not-a-guid")
    assert (response.status_code, response.reason_phrase) == (400, MP_BAD_MESSAGE)


@pytest.mark.parametrize("character", ["\ufffe", "\uffff"])
def test_a_source_host_xml_cannot_carry_is_refused(site_client: SiteClient, tokens: tuple[str, str],
                                                   character: str) -> None:
    """A non-character in SourceHost (which the reply would have to echo as TargetHost) is a 400, not a 500."""
    _, ccm = tokens
    header = envelope.MessageHeader(target_endpoint="MP_LocationManager", source_host="QQQQ", message_id="{X}")
    wire = envelope.encode_message(header, messages.SiteInformationRequest("MEM").to_xml())
    wire = wire.replace("QQQQ".encode("utf-16-le"), f"Q{character}QQ".encode("utf-16-le"), 1)
    response = site_client.http.request(envelope.CCM_POST, site_client.server_auth("ccm_system_tokenauth/request"),
                                        content=wire, headers={"Content-Type": envelope.CONTENT_TYPE,
                                                               "Authorization": f"Bearer {ccm}"})
    assert (response.status_code, response.reason_phrase) == (400, MP_BAD_MESSAGE)


def test_a_source_host_with_a_noncharacter_xml_carries_is_accepted(site_client: SiteClient,
                                                                   tokens: tuple[str, str]) -> None:
    """U+FDD0 is a non-character XML still carries: accepted and echoed, as a tolerant MP would."""
    _, ccm = tokens
    response = site_client.message("MP_LocationManager", messages.SiteInformationRequest("MEM").to_xml(), token=ccm,
                                   source_host="HOST\ufdd0")
    assert response.status_code == 200
    assert response.reply.header.target_host == "HOST\ufdd0"


@pytest.mark.parametrize("body", ["<!---->" * 28 + "x", "<!--" * 40, "<!-- -->" * 25 + "<1/>"],
                         ids=["196-byte-nested-comments", "unclosed", "comments-then-bad-name"])
def test_a_location_body_of_comments_is_answered_4xx_at_once(site_client: SiteClient, tokens: tuple[str, str],
                                                             body: str) -> None:
    """Under 200 bytes of comments stalled the whole site for minutes (regex backtracking); now a quick 400."""
    _, ccm = tokens
    started = time.perf_counter()
    response = site_client.message("MP_LocationManager", body, token=ccm)
    assert time.perf_counter() - started < 0.5
    assert (response.status_code, response.reason_phrase) == (400, MP_BAD_MESSAGE)
