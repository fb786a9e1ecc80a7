"""Specification of the message XML (PROTOCOL.md §4) and of the guarded XML parser."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cmg_protocol.messages import (
    MESSAGE_TYPES,
    ContentLocationReply,
    ContentLocationRequest,
    MessageError,
    MPEntry,
    MPList,
    PolicyAssignment,
    PolicyBody,
    RegistrationRequest,
    RegistrationResponse,
    RegistrationStatus,
    ReplyAssignments,
    RequestAssignments,
    SiteInfoReply,
    SiteInformationRequest,
    escape_attr,
    escape_text,
    message_from_xml,
    parse_xml,
    policy_location,
    root_tag,
)

_INVALID_XML = "".join(chr(c) for c in [*range(9), 11, 12, *range(14, 32), 0xFFFE, 0xFFFF])
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters=_INVALID_XML), max_size=30)
ints = st.integers(-(2**40), 2**40)
location = text.map(lambda tail: f"http://<mp>/SMS_MP/.sms_pol?{tail}")

assignments = st.builds(
    PolicyAssignment,
    policy_id=text, policy_version=text, policy_type=text, policy_category=text, policy_flags=ints,
    location_url=location, assignment_id=text,
)
MESSAGES = {
    RegistrationRequest: st.builds(
        RegistrationRequest, netbios_name=text, fq_name=text, locale_id=ints, internet_flag=st.sampled_from([0, 1, 2]),
        agent_version=text, signing_cert_hex=text, encryption_cert_hex=text, timestamp=text, smsid=text,
        request_type=text, signature_hex=text,
    ),
    RegistrationResponse: st.builds(
        RegistrationResponse, status=st.sampled_from(list(RegistrationStatus)), smsid=text, approval_status=ints,
        timestamp=text,
    ),
    SiteInformationRequest: st.builds(SiteInformationRequest, site_code=text),
    SiteInfoReply: st.builds(SiteInfoReply, site_code=text, version=text, build_number=ints,
                             mp_name=st.none() | text),
    ContentLocationRequest: st.builds(ContentLocationRequest, site_code=text, package_id=st.none() | text,
                                      package_version=text, use_azure=st.booleans(), use_internet_dp=st.booleans()),
    ContentLocationReply: st.builds(ContentLocationReply, site_code=text, urls=st.lists(text, max_size=4).map(tuple)),
    MPList: st.builds(MPList, entries=st.lists(st.builds(MPEntry, name=text, fqdn=text, version=text, ssl_state=ints),
                                               max_size=3).map(tuple)),
    RequestAssignments: st.builds(RequestAssignments, client_id=text, fqdn=text, netbios_name=text, sid=text,
                                  site_code=text, resource_type=st.sampled_from(["Machine", "User"])),
    ReplyAssignments: st.builds(ReplyAssignments, assignments=st.lists(assignments, max_size=3).map(tuple)),
    PolicyBody: st.builds(PolicyBody, policy_id=text, policy_version=text, body=text),
}

REGISTRATION = RegistrationRequest(
    netbios_name="DEVICE0001", fq_name="device0001.corp.example", locale_id=2057, internet_flag=1,
    agent_version="5.00.8968.1000", signing_cert_hex="3082AB", encryption_cert_hex="3082CD",
    timestamp="2020-06-24T15:31:46Z",
)


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_every_message_round_trips(cls: type, data: st.DataObject) -> None:
    """from_xml(to_xml(m)) == m for any field values XML can carry, astral characters, CR and quotes included."""
    message = data.draw(MESSAGES[cls])
    assert cls.from_xml(message.to_xml()) == message


@pytest.mark.parametrize("cls", list(MESSAGES), ids=lambda cls: cls.__name__)
@given(data=st.data())
def test_message_from_xml_dispatches_on_the_root(cls: type, data: st.DataObject) -> None:
    """message_from_xml picks the class from the root element."""
    message = data.draw(MESSAGES[cls])
    assert message_from_xml(message.to_xml()) == message


def test_registration_request_has_the_documented_shape() -> None:
    """Data attributes, agent information, hex certificates and discovery properties sit where the tools put them."""
    root = ET.fromstring(REGISTRATION.to_xml())
    data = root.find("Data")
    assert root.tag == "ClientRegistrationRequest" and data is not None
    assert (data.get("HashAlgorithm"), data.get("RequestType"), data.get("SMSID")) == (
        "1.2.840.113549.1.1.11", "Registration", "")
    assert root.find("Data/AgentInformation").get("AgentVersion") == "5.00.8968.1000"
    assert root.find("Data/Certificates/Signing").text == "3082AB"
    assert root.find("Data/Certificates/Encryption").get("Encoding") == "HexBinary"
    props = {p.get("Name"): p.get("Value") for p in root.iterfind("Data/DiscoveryProperties/Property")}
    assert props == {"Netbios Name": "DEVICE0001", "FQ Name": "device0001.corp.example", "Locale ID": "2057",
                     "InternetFlag": "1"}
    assert root.find("Signature/SignatureValue") is not None


def test_registration_data_xml_is_the_data_element_of_the_request() -> None:
    """data_xml() (what the signature covers) appears verbatim in the request."""
    assert f"<ClientRegistrationRequest>{REGISTRATION.data_xml()}<Signature>" in REGISTRATION.to_xml()


def test_registration_response_has_the_documented_attributes() -> None:
    """The reply is one element with ResponseType, TimeStamp, Status, SMSID and ApprovalStatus."""
    reply = RegistrationResponse(status=0, smsid="GUID:C66EE0FD", approval_status=3, timestamp="T")
    assert reply.to_xml() == ('<ClientRegistrationResponse ResponseType="Registration" TimeStamp="T" Status="0"'
                              ' SMSID="GUID:C66EE0FD" ApprovalStatus="3"/>')


def test_request_assignments_has_the_documented_shape() -> None:
    """Identification/Machine, PolicySource SMS:<site> and Resource sit where the tools put them."""
    request = RequestAssignments(client_id="GUID:C66", fqdn="d.corp", netbios_name="D", sid="S-1-5", site_code="MEM")
    root = ET.fromstring(request.to_xml())
    assert (root.get("SchemaVersion"), root.get("ACK"), root.get("RequestType")) == ("1.00", "false", "Always")
    assert root.find("Identification/Machine/ClientID").text == "GUID:C66"
    assert root.find("PolicySource").text == "SMS:MEM"
    assert root.find("Resource").get("ResourceType") == "Machine"
    assert root.find("ServerCookie") is not None and root.find("Identification/User") is not None


def test_content_location_request_names_client_package_or_package() -> None:
    """package_id None asks for the client package; otherwise a Package element names it."""
    client = ET.fromstring(ContentLocationRequest("MEM", None, "").to_xml())
    package = ET.fromstring(ContentLocationRequest("MEM", "CS100001", "2").to_xml())
    assert client.find("ClientPackage").get("RequestForLatest") == "0" and client.find("Package") is None
    assert (package.find("Package").get("ID"), package.find("Package").get("Version")) == ("CS100001", "2")
    assert (client.get("SchemaVersion"), client.get("BGRVersion")) == ("1.00", "1")
    info = client.find("ClientLocationInfo")
    assert (info.get("UseAzure"), info.get("UseInternetDP")) == ("1", "1")


def test_content_location_reply_escapes_the_query_ampersand() -> None:
    """A download URL's '&' is escaped in XML and read back as '&'."""
    url = "https://cmg.example/downloadrestservice.svc/getcontentxmlsecure?pid=CS100001&cid=CS100001"
    xml = ContentLocationReply("MEM", (url,)).to_xml()
    assert "pid=CS100001&amp;cid=CS100001" in xml
    assert ContentLocationReply.from_xml(xml).urls == (url,)


def test_mplist_has_the_documented_shape() -> None:
    """Each MP carries Name, FQDN, a Version child and an SSLState capability."""
    root = ET.fromstring(MPList((MPEntry("MP", "mp.corp", "8968", 63),)).to_xml())
    mp = root.find("MP")
    assert (mp.get("Name"), mp.get("FQDN"), mp.find("Version").text) == ("MP", "mp.corp", "8968")
    assert mp.find("Capabilities/Property").attrib == {"Name": "SSLState", "Value": "63"}


def test_numeric_text_fields_are_kept_as_integers() -> None:
    """PolicyFlags and SSLState given as text become integers; non-numbers are refused."""
    assert MPEntry("MP", "mp", "1", "63").ssl_state == 63  # type: ignore[arg-type]
    with pytest.raises(MessageError, match="PolicyFlags"):
        PolicyAssignment("P", "1", "Machine", "C", "x", "http://<mp>/p")  # type: ignore[arg-type]


def test_policy_location_holds_the_mp_placeholder_literally() -> None:
    """The MP writes '<mp>' in the URL, escaped in XML, read back literally."""
    assignment = PolicyAssignment("{P1}", "1.00", "Machine", "C", 0, policy_location("{P1}", "1.00"))
    xml = ReplyAssignments((assignment,)).to_xml()
    assert "<PolicyLocation>http://&lt;mp&gt;/SMS_MP/.sms_pol?{P1}.1_00</PolicyLocation>" in xml
    assert ReplyAssignments.from_xml(xml).assignments[0].location_url == "http://<mp>/SMS_MP/.sms_pol?{P1}.1_00"


def test_policy_location_is_resolved_against_the_cmg_base() -> None:
    """location_for() swaps 'http://<mp>' for the client's MP or CMG base URL."""
    assignment = PolicyAssignment("{P1}", "1.00", "Machine", "C", 0, policy_location("{P1}", "1.00"))
    base = "https://cmg.example/CCM_Proxy_MutualAuth/72186325152220500/"
    expected = "https://cmg.example/CCM_Proxy_MutualAuth/72186325152220500/SMS_MP/.sms_pol?{P1}.1_00"
    assert assignment.location_for(base) == expected


def test_policy_location_without_placeholder_is_refused() -> None:
    """A PolicyLocation must carry the <mp> placeholder."""
    with pytest.raises(MessageError, match="<mp>"):
        PolicyAssignment("P", "1", "Machine", "C", 0, "http://mp.corp/SMS_MP/.sms_pol?P")


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: RegistrationRequest("D", "d", 1, 3, "v", "s", "e", "t"), "InternetFlag"),
        (lambda: RegistrationResponse(status=4, smsid="", approval_status=3, timestamp=""), "Status"),
        (lambda: RequestAssignments("GUID:1", "f", "n", "s", "MEM", resource_type="Device"), "ResourceType"),
    ],
)
def test_out_of_range_values_are_refused(build, reason: str) -> None:
    """Values outside the documented sets raise MessageError naming the field."""
    with pytest.raises(MessageError, match=reason):
        build()


def test_registration_status_is_the_documented_enum() -> None:
    """Status 0 ok, 1 pending, 2 resend, 3 rejected."""
    assert [s.value for s in RegistrationStatus] == [0, 1, 2, 3]
    reply = RegistrationResponse.from_xml(RegistrationResponse(3, "", 3, "t").to_xml())
    assert reply.status is RegistrationStatus.REJECTED


@pytest.mark.parametrize(
    ("cls", "xml", "missing"),
    [
        (RegistrationResponse, '<ClientRegistrationResponse TimeStamp="t" SMSID="" ApprovalStatus="3"/>', "Status"),
        (RegistrationResponse, '<ClientRegistrationResponse TimeStamp="t" Status="0" ApprovalStatus="3"/>', "SMSID"),
        (RegistrationRequest, "<ClientRegistrationRequest/>", "Data"),
        (RegistrationRequest, REGISTRATION.to_xml().replace(' TimeStamp="2020-06-24T15:31:46Z"', ""), "TimeStamp"),
        (RegistrationRequest, REGISTRATION.to_xml().replace('Name="FQ Name"', 'Name="Other"'), "FQ Name"),
        (SiteInformationRequest, "<SiteInformationRequest/>", "SiteCode"),
        (SiteInfoReply, "<SiteInfoReply><Site><SiteCode>MEM</SiteCode></Site></SiteInfoReply>", "Version"),
        (ContentLocationRequest, "<ContentLocationRequest/>", "Package"),
        (ContentLocationReply, "<ContentLocationReply><Sites/></ContentLocationReply>", "Sites/Site"),
        (MPList, '<MPList><MP Name="M" FQDN="f"><Version>1</Version></MP></MPList>', "SSLState"),
        (RequestAssignments, "<RequestAssignments/>", "Identification/Machine"),
        (ReplyAssignments, ("<ReplyAssignments><PolicyAssignment><Policy PolicyID='p'/></PolicyAssignment>"
                            "</ReplyAssignments>"), "PolicyVersion"),
        (PolicyBody, '<Policy PolicyID="p"/>', "PolicyVersion"),
    ],
)
def test_missing_parts_are_named(cls: type, xml: str, missing: str) -> None:
    """from_xml raises MessageError naming the first required attribute or element that is missing."""
    with pytest.raises(MessageError, match=missing):
        cls.from_xml(xml)


def test_wrong_root_is_refused() -> None:
    """A class reads only its own root element."""
    with pytest.raises(MessageError, match="expected root <ReplyAssignments>, got <MPList>"):
        ReplyAssignments.from_xml("<MPList/>")


def test_non_numbers_in_numeric_attributes_are_refused() -> None:
    """An integer attribute that is not a number is named."""
    with pytest.raises(MessageError, match="ApprovalStatus is not an integer"):
        RegistrationResponse.from_xml(
            '<ClientRegistrationResponse TimeStamp="t" Status="0" SMSID="" ApprovalStatus="x"/>')


@pytest.mark.parametrize("bad", ["\x01", "\x00", "\ufffe", "\ud800"])
def test_characters_xml_cannot_carry_are_refused(bad: str) -> None:
    """to_xml refuses text XML 1.0 cannot represent, naming the character."""
    with pytest.raises(MessageError, match=f"U\\+{ord(bad):04X}"):
        SiteInformationRequest(site_code=f"M{bad}M").to_xml()


@pytest.mark.parametrize("value", ["a&b", "<x>", 'say "hi"', "cr\rlf\n", "tab\there", "]]>", "plain"])
def test_escaping_survives_a_parser(value: str) -> None:
    """Escaped text and attribute values parse back to exactly the original."""
    element = ET.fromstring(f'<e a="{escape_attr(value)}">{escape_text(value)}</e>')
    assert (element.get("a"), element.text or "") == (value, value)


@pytest.mark.parametrize("special", ["&", "<", ">", "\r", "\x01", "\x1f", "\t", "\n", "\x7f", "\u00e9"])
def test_long_text_is_escaped_like_short_text(special: str) -> None:
    """Text past 64 characters (signatures, key blobs) takes the fast check: every special still escaped, every
    character XML cannot carry still refused, and plain hex passed through untouched."""
    hex_text = "0123456789ABCDEF" * 8
    assert escape_text(hex_text) is hex_text
    for value in (hex_text + special, special + hex_text, hex_text[:40] + special + hex_text[40:]):
        if special in ("\x01", "\x1f"):
            with pytest.raises(MessageError):
                escape_text(value)
            continue
        element = ET.fromstring(f"<e>{escape_text(value)}</e>")
        assert element.text == value
        assert escape_text(value) == escape_text(special).join(
            escape_text(part) for part in value.split(special))


BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
    "<lolz>&lol2;</lolz>"
)


@pytest.mark.parametrize(
    ("xml", "reason"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        ('<!DOCTYPE r SYSTEM "file:///etc/passwd"><r/>', "DOCTYPE"),
        (
            '<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
            "DOCTYPE",
        ),
        ('<r><!ENTITY x "y"></r>', "not well-formed"),
        ("<r>", "not well-formed"),
        ("<r>&undefined;</r>", "not well-formed"),
    ],
)
def test_parse_xml_refuses_dtds_and_malformed_xml(xml: str, reason: str) -> None:
    """DTDs (hence entity expansion and external entities) and malformed XML raise MessageError."""
    with pytest.raises(MessageError, match=reason):
        parse_xml(xml)


@pytest.mark.parametrize("xml", ["<r><![CDATA[<!DOCTYPE r>]]></r>", "<r><!-- <!ENTITY x 'y'> --></r>"])
def test_parse_xml_reads_dtd_words_that_are_only_data(xml: str) -> None:
    """``<!DOCTYPE`` inside CDATA or a comment is text, not a DTD: the parser, not a substring search, decides."""
    assert parse_xml(xml).tag == "r"


def test_parse_xml_refuses_text_over_the_limit() -> None:
    """Texts longer than max_chars are refused before parsing."""
    with pytest.raises(MessageError, match="exceeds the limit of 10"):
        parse_xml("<r>0123456789</r>", max_chars=10)


def test_parse_xml_reads_a_utf16_declaration_from_text() -> None:
    """A decoded body that still declares encoding UTF-16 parses."""
    assert parse_xml('<?xml version="1.0" encoding="UTF-16"?><SiteInfoReply/>').tag == "SiteInfoReply"


@pytest.mark.parametrize(
    "xml",
    [
        "<ReplyAssignments/>",
        '\ufeff<?xml version="1.0" encoding="UTF-16"?>\r\n<ReplyAssignments SchemaVersion="1.00">',
        "<!-- comment --> <ReplyAssignments>",
    ],
)
def test_root_tag_reads_the_root_name_past_the_prolog(xml: str) -> None:
    """root_tag skips BOM, declaration, comments and whitespace."""
    assert root_tag(xml) == "ReplyAssignments"


@pytest.mark.parametrize("xml", ["", "not xml", "<!DOCTYPE r><r/>", "<1bad/>"])
def test_root_tag_refuses_text_without_a_root(xml: str) -> None:
    """Text that does not start with an element raises MessageError."""
    with pytest.raises(MessageError, match="no root element"):
        root_tag(xml)


def test_message_from_xml_refuses_unknown_roots() -> None:
    """An unknown root element is named."""
    with pytest.raises(MessageError, match="unknown message root <EnumerateMPLocationRequest>"):
        message_from_xml("<EnumerateMPLocationRequest/>")


def test_message_types_cover_every_message_class() -> None:
    """Every message class is reachable by its root element."""
    assert set(MESSAGE_TYPES.values()) == set(MESSAGES)


@pytest.mark.parametrize("xml", [
    "<!---->" * 28 + "x",  # 196 characters: took over a minute with the old prolog regex
    "<!--" * 10_000,
    "<!-- -->" * 5_000 + "<1bad/>",
    "<?xml " + "<!--" * 10_000,
])
def test_root_tag_is_linear_on_hostile_prologs(xml: str) -> None:
    """Nested, unclosed or endless comments are refused in linear time, never by backtracking."""
    started = time.perf_counter()
    with pytest.raises(MessageError, match="no root element"):
        root_tag(xml)
    assert time.perf_counter() - started < 0.1


def test_root_tag_reads_a_root_after_many_comments() -> None:
    """A long run of comments before the root is still read, in one pass."""
    assert root_tag("<!-- a -->\n" * 1000 + "<SiteInformationRequest/>") == "SiteInformationRequest"
