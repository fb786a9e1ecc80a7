"""Message XML carried in CCM messaging bodies and MP GET replies: build with ``to_xml()``, read with ``from_xml()``."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self
from urllib.parse import quote

#: Largest XML text parse_xml accepts: a 4 MiB UTF-16 body decodes to 2 Mi characters.
MAX_XML_CHARS = 2 * 1024 * 1024

#: RSA with SHA-256, the hash algorithm OID a registration request names.
SHA256_RSA_OID = "1.2.840.113549.1.1.11"
#: The placeholder the MP leaves in policy locations; the client puts its MP (or CMG) address in its place.
MP_PLACEHOLDER = "<mp>"

# Characters XML 1.0 cannot carry at all (not even as character references).
_INVALID_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Anything that needs escaping, or that may be invalid; values without these are emitted as they are (the fast path).
_TEXT_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTR_SPECIAL = re.compile("[&<>\"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ROOT_TAG = re.compile(
    r"\A\ufeff?\s*(?:<\?xml[^>]*\?>\s*)?(?:<!--.*?-->\s*)*<([A-Za-z_][\w.\-]*(?::[A-Za-z_][\w.\-]*)?)", re.DOTALL
)


class MessageError(ValueError):
    """A message's XML is unusable (malformed, refused, or missing something); the message names what."""


def _check_chars(value: str) -> None:
    bad = _INVALID_XML_CHAR.search(value)
    if bad is not None:
        raise MessageError(f"character U+{ord(bad.group()):04X} cannot be carried in XML (in {value[:40]!r})")


def escape_text(value: str) -> str:
    """Escape ``value`` for element content so that a parser gives back exactly ``value``."""
    if _TEXT_SPECIAL.search(value) is None:
        return value
    _check_chars(value)
    # A parser turns a literal CR into LF; the character reference keeps it.
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def escape_attr(value: str) -> str:
    """Escape ``value`` for a double-quoted attribute so that a parser gives back exactly ``value``."""
    if _ATTR_SPECIAL.search(value) is None:
        return value
    _check_chars(value)
    # Attribute-value normalisation turns literal CR, LF and TAB into spaces; references survive it.
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("\r", "&#13;")
        .replace("\n", "&#10;")
        .replace("\t", "&#9;")
    )


def parse_xml(text: str, *, max_chars: int = MAX_XML_CHARS) -> ET.Element:
    """Parse message XML, refusing DTDs (so no entity expansion) and texts longer than ``max_chars``."""
    if not isinstance(text, str):
        raise TypeError(f"parse_xml takes str, got {type(text).__name__}")
    if len(text) > max_chars:
        raise MessageError(f"XML text of {len(text)} characters exceeds the limit of {max_chars}")
    # Without a DOCTYPE no entity can be declared, so refusing it rules out entity expansion and external entities.
    for marker in ("<!DOCTYPE", "<!ENTITY"):
        if marker in text:
            raise MessageError(f"XML with {marker[2:]} is refused")
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise MessageError(f"XML is not well-formed: {exc}") from None


def root_tag(text: str) -> str:
    """Name of the root element, read from the first characters without parsing the document."""
    found = _ROOT_TAG.match(text)
    if found is None:
        raise MessageError(f"no root element at the start of {text[:60]!r}")
    return found.group(1)


def _expect_root(element: ET.Element, tag: str) -> None:
    if element.tag != tag:
        raise MessageError(f"expected root <{tag}>, got <{element.tag}>")


def _attr(element: ET.Element, name: str) -> str:
    value = element.get(name)
    if value is None:
        raise MessageError(f"<{element.tag}> is missing attribute {name}")
    return value


def _child(element: ET.Element, path: str) -> ET.Element:
    found = element.find(path)
    if found is None:
        raise MessageError(f"<{element.tag}> is missing element {path}")
    return found


def _child_text(element: ET.Element, path: str) -> str:
    return _child(element, path).text or ""


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MessageError(f"{what} is not an integer: {value!r}") from None


def _as_int(value: int | str, what: str) -> int:
    # XML attributes are text, so callers may hand over "63"; keep the field an int either way.
    if isinstance(value, str):
        return _int(value, what)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MessageError(f"{what} must be an integer, got {value!r}")
    return value


def _flag(value: bool) -> str:
    return "1" if value else "0"


def _parse_flag(value: str, what: str) -> bool:
    if value not in ("0", "1"):
        raise MessageError(f"{what} must be 0 or 1, got {value!r}")
    return value == "1"


# --- registration (MP_ClientRegistration) -------------------------------------------------------------------------


class RegistrationStatus(IntEnum):
    """The Status of a registration reply."""

    OK = 0
    PENDING = 1
    RESEND = 2
    REJECTED = 3


#: Approval status the MP reports for a client registered through Microsoft Entra ID ("Approval status 3").
APPROVAL_ENTRA = 3


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    """``ClientRegistrationRequest``: the client's identity, its self-signed certificates and discovery properties."""

    ROOT: ClassVar[str] = "ClientRegistrationRequest"

    netbios_name: str
    fq_name: str
    locale_id: int
    internet_flag: int  # 0 intranet, 1 internet-enabled, 2 always internet
    agent_version: str
    signing_cert_hex: str
    encryption_cert_hex: str
    timestamp: str
    smsid: str = ""
    request_type: str = "Registration"
    signature_hex: str = ""

    def __post_init__(self) -> None:
        if self.internet_flag not in (0, 1, 2):
            raise MessageError(f"InternetFlag must be 0, 1 or 2, got {self.internet_flag!r}")

    def data_xml(self) -> str:
        """The ``<Data>`` element: the part of the request the registration signature covers."""
        e = escape_attr
        return (
            f'<Data HashAlgorithm="{SHA256_RSA_OID}" SMSID="{e(self.smsid)}" RequestType="{e(self.request_type)}"'
            f' TimeStamp="{e(self.timestamp)}">'
            f'<AgentInformation AgentIdentity="CCMSetup.exe" AgentVersion="{e(self.agent_version)}" AgentType="0"/>'
            f'<Certificates><Encryption Encoding="HexBinary" KeyType="1">{escape_text(self.encryption_cert_hex)}'
            f'</Encryption><Signing Encoding="HexBinary" KeyType="1">{escape_text(self.signing_cert_hex)}</Signing>'
            f"</Certificates><DiscoveryProperties>"
            f'<Property Name="Netbios Name" Value="{e(self.netbios_name)}"/>'
            f'<Property Name="FQ Name" Value="{e(self.fq_name)}"/>'
            f'<Property Name="Locale ID" Value="{self.locale_id:d}"/>'
            f'<Property Name="InternetFlag" Value="{self.internet_flag:d}"/>'
            f"</DiscoveryProperties></Data>"
        )

    def to_xml(self) -> str:
        """The request as XML."""
        return (
            f"<{self.ROOT}>{self.data_xml()}"
            f"<Signature><SignatureValue>{escape_text(self.signature_hex)}</SignatureValue></Signature></{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming the first required attribute or element that is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        data = _child(root, "Data")
        props: dict[str, str] = {}
        for prop in _child(data, "DiscoveryProperties").iter("Property"):
            props[_attr(prop, "Name")] = _attr(prop, "Value")
        for name in ("Netbios Name", "FQ Name", "Locale ID", "InternetFlag"):
            if name not in props:
                raise MessageError(f"<DiscoveryProperties> is missing Property {name!r}")
        signature = root.find("Signature/SignatureValue")
        return cls(
            netbios_name=props["Netbios Name"],
            fq_name=props["FQ Name"],
            locale_id=_int(props["Locale ID"], "Locale ID"),
            internet_flag=_int(props["InternetFlag"], "InternetFlag"),
            agent_version=_attr(_child(data, "AgentInformation"), "AgentVersion"),
            signing_cert_hex=_child_text(data, "Certificates/Signing"),
            encryption_cert_hex=_child_text(data, "Certificates/Encryption"),
            timestamp=_attr(data, "TimeStamp"),
            smsid=_attr(data, "SMSID"),
            request_type=_attr(data, "RequestType"),
            signature_hex=(signature.text or "") if signature is not None else "",
        )


@dataclass(frozen=True, slots=True)
class RegistrationResponse:
    """``ClientRegistrationResponse``: whether the MP registered the client, and the SMSID it assigned."""

    ROOT: ClassVar[str] = "ClientRegistrationResponse"

    status: int
    smsid: str
    approval_status: int
    timestamp: str

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "status", RegistrationStatus(self.status))
        except ValueError:
            raise MessageError(f"registration Status must be 0..3, got {self.status!r}") from None

    def to_xml(self) -> str:
        """The reply as XML."""
        return (
            f'<{self.ROOT} ResponseType="Registration" TimeStamp="{escape_attr(self.timestamp)}"'
            f' Status="{int(self.status)}" SMSID="{escape_attr(self.smsid)}"'
            f' ApprovalStatus="{self.approval_status:d}"/>'
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming the first required attribute that is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        return cls(
            status=_int(_attr(root, "Status"), "Status"),
            smsid=_attr(root, "SMSID"),
            approval_status=_int(_attr(root, "ApprovalStatus"), "ApprovalStatus"),
            timestamp=_attr(root, "TimeStamp"),
        )


# --- location (MP_LocationManager) ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SiteInformationRequest:
    """``SiteInformationRequest``: which site (version, build) the client was told to join."""

    ROOT: ClassVar[str] = "SiteInformationRequest"

    site_code: str

    def to_xml(self) -> str:
        """The request as XML."""
        # synthetic: not the public ConfigMgr format (the SiteCode child's shape)
        return f'<{self.ROOT} SchemaVersion="1.00"><SiteCode Name="{escape_attr(self.site_code)}"/></{self.ROOT}>'

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        return cls(site_code=_attr(_child(root, "SiteCode"), "Name"))


@dataclass(frozen=True, slots=True)
class SiteInfoReply:
    """``SiteInfoReply``: the site's code, version and build number (and, in our mock, its MP name)."""

    ROOT: ClassVar[str] = "SiteInfoReply"

    site_code: str
    version: str
    build_number: int
    mp_name: str | None = None

    def to_xml(self) -> str:
        """The reply as XML."""
        # synthetic: not the public ConfigMgr format (an MP child naming the management point)
        mp = "" if self.mp_name is None else f"<MP>{escape_text(self.mp_name)}</MP>"
        return (
            f'<{self.ROOT} SchemaVersion="1.00"><Site><SiteCode>{escape_text(self.site_code)}</SiteCode>'
            f"<Version>{escape_text(self.version)}</Version><BuildNumber>{self.build_number:d}</BuildNumber>"
            f"{mp}</Site></{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        site = _child(root, "Site")
        mp = site.find("MP")
        return cls(
            site_code=_child_text(site, "SiteCode"),
            version=_child_text(site, "Version"),
            build_number=_int(_child_text(site, "BuildNumber"), "BuildNumber"),
            mp_name=None if mp is None else (mp.text or ""),
        )


@dataclass(frozen=True, slots=True)
class ContentLocationRequest:
    """``ContentLocationRequest``: where to download a package, or the client package when ``package_id`` is None."""

    ROOT: ClassVar[str] = "ContentLocationRequest"

    site_code: str
    package_id: str | None
    package_version: str
    use_azure: bool = True
    use_internet_dp: bool = True

    def to_xml(self) -> str:
        """The request as XML."""
        version = escape_attr(self.package_version)
        if self.package_id is None:
            # synthetic: not the public ConfigMgr format (a Version attribute on ClientPackage)
            package = f'<ClientPackage RequestForLatest="0" Version="{version}"/>'
        else:
            package = f'<Package ID="{escape_attr(self.package_id)}" Version="{version}"/>'
        return (
            f'<{self.ROOT} SchemaVersion="1.00" BGRVersion="1">{package}'
            f'<AssignedSite SiteCode="{escape_attr(self.site_code)}"/>'
            f'<ClientLocationInfo LocationType="SMSPackage" UseProtocol="https"'
            f' UseAzure="{_flag(self.use_azure)}" UseInternetDP="{_flag(self.use_internet_dp)}"/>'
            f"</{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        client_package = root.find("ClientPackage")
        if client_package is not None:
            package_id, version = None, client_package.get("Version", "")
        else:
            package = _child(root, "Package")
            package_id, version = _attr(package, "ID"), _attr(package, "Version")
        info = _child(root, "ClientLocationInfo")
        return cls(
            site_code=_attr(_child(root, "AssignedSite"), "SiteCode"),
            package_id=package_id,
            package_version=version,
            use_azure=_parse_flag(_attr(info, "UseAzure"), "UseAzure"),
            use_internet_dp=_parse_flag(_attr(info, "UseInternetDP"), "UseInternetDP"),
        )


@dataclass(frozen=True, slots=True)
class ContentLocationReply:
    """``ContentLocationReply``: the download URLs for the requested content, in order of preference."""

    ROOT: ClassVar[str] = "ContentLocationReply"

    site_code: str
    urls: tuple[str, ...]

    def to_xml(self) -> str:
        """The reply as XML."""
        records = "".join(f'<LocationRecord><URL Name="{escape_attr(url)}"/></LocationRecord>' for url in self.urls)
        site = escape_attr(self.site_code)
        return (
            f'<{self.ROOT} SchemaVersion="1.00"><Sites><Site>'
            f'<MPSite SiteCode="{site}" MasterSiteCode="{site}" SiteLocality="LOCAL"/>'
            f"<LocationRecords>{records}</LocationRecords></Site></Sites></{self.ROOT}>"
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        site = _child(root, "Sites/Site")
        records = _child(site, "LocationRecords")
        return cls(
            site_code=_attr(_child(site, "MPSite"), "SiteCode"),
            urls=tuple(_attr(url, "Name") for url in records.iterfind("LocationRecord/URL")),
        )


@dataclass(frozen=True, slots=True)
class MPEntry:
    """One management point (``<MP>``) in an MPLIST reply."""

    name: str
    fqdn: str
    version: str
    ssl_state: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "ssl_state", _as_int(self.ssl_state, "SSLState"))


@dataclass(frozen=True, slots=True)
class MPList:
    """``MPList``: the management points the site offers (``GET /SMS_MP/.sms_aut?MPLIST``)."""

    ROOT: ClassVar[str] = "MPList"

    entries: tuple[MPEntry, ...]

    def to_xml(self) -> str:
        """The list as XML."""
        mps = "".join(
            f'<MP Name="{escape_attr(mp.name)}" FQDN="{escape_attr(mp.fqdn)}"><Version>{escape_text(mp.version)}'
            f'</Version><Capabilities SchemaVersion="1.0"><Property Name="SSLState" Value="{mp.ssl_state:d}"/>'
            f"</Capabilities></MP>"
            for mp in self.entries
        )
        return f"<{self.ROOT}>{mps}</{self.ROOT}>"

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a list, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        entries = []
        for mp in root.iterfind("MP"):
            ssl = next((p for p in mp.iterfind("Capabilities/Property") if p.get("Name") == "SSLState"), None)
            if ssl is None:
                raise MessageError(f"<MP Name={mp.get('Name')!r}> is missing the SSLState capability")
            entries.append(
                MPEntry(
                    name=_attr(mp, "Name"),
                    fqdn=_attr(mp, "FQDN"),
                    version=_child_text(mp, "Version"),
                    ssl_state=_int(_attr(ssl, "Value"), "SSLState"),
                )
            )
        return cls(entries=tuple(entries))


# --- policy (MP_PolicyManager) -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestAssignments:
    """``RequestAssignments``: a client asking which policies apply to it; ``client_id`` keeps its ``GUID:`` prefix."""

    ROOT: ClassVar[str] = "RequestAssignments"

    client_id: str
    fqdn: str
    netbios_name: str
    sid: str
    site_code: str
    resource_type: str = "Machine"

    def __post_init__(self) -> None:
        if self.resource_type not in ("Machine", "User"):
            raise MessageError(f"ResourceType must be Machine or User, got {self.resource_type!r}")

    def to_xml(self) -> str:
        """The request as XML."""
        t = escape_text
        return (
            f'<{self.ROOT} SchemaVersion="1.00" ACK="false" RequestType="Always"><Identification><Machine>'
            f"<ClientID>{t(self.client_id)}</ClientID><FQDN>{t(self.fqdn)}</FQDN>"
            f"<NetBIOSName>{t(self.netbios_name)}</NetBIOSName><SID>{t(self.sid)}</SID></Machine><User/>"
            f"</Identification><PolicySource>SMS:{t(self.site_code)}</PolicySource>"
            f'<Resource ResourceType="{self.resource_type}"/><ServerCookie/></{self.ROOT}>'
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a request, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        machine = _child(root, "Identification/Machine")
        source = _child_text(root, "PolicySource")
        if not source.startswith("SMS:"):
            raise MessageError(f"PolicySource must be SMS:<site code>, got {source!r}")
        return cls(
            client_id=_child_text(machine, "ClientID"),
            fqdn=_child_text(machine, "FQDN"),
            netbios_name=_child_text(machine, "NetBIOSName"),
            sid=_child_text(machine, "SID"),
            site_code=source[4:],
            resource_type=_attr(_child(root, "Resource"), "ResourceType"),
        )


def policy_location(policy_id: str, policy_version: str) -> str:
    """The ``<mp>``-relative URL of a policy body, as the MP puts it in a ``PolicyLocation``."""
    # synthetic: not the public ConfigMgr format (the query naming the policy)
    query = quote(f"{policy_id}.{policy_version}", safe="{}-._~:@!$'()*+,;=")
    return f"http://{MP_PLACEHOLDER}/SMS_MP/.sms_pol?{query}"


@dataclass(frozen=True, slots=True)
class PolicyAssignment:
    """One assignment in a ``ReplyAssignments``: which policy, which version, and where its body lives."""

    policy_id: str
    policy_version: str
    policy_type: str
    policy_category: str
    policy_flags: int
    location_url: str
    assignment_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy_flags", _as_int(self.policy_flags, "PolicyFlags"))
        if MP_PLACEHOLDER not in self.location_url:
            raise MessageError(f"PolicyLocation must hold the {MP_PLACEHOLDER} placeholder: {self.location_url!r}")

    def location_for(self, mp_base: str) -> str:
        """The body's URL with the placeholder and scheme replaced by ``mp_base`` (e.g. ``https://cmg/CCM_Proxy_…/id``)."""
        _, _, tail = self.location_url.partition(MP_PLACEHOLDER)
        return mp_base.rstrip("/") + tail

    def to_xml(self) -> str:
        """The assignment as XML."""
        e = escape_attr
        assignment = f' PolicyAssignmentID="{e(self.assignment_id)}"' if self.assignment_id else ""
        return (
            f"<PolicyAssignment{assignment}><Policy PolicyID=\"{e(self.policy_id)}\""
            f' PolicyVersion="{e(self.policy_version)}" PolicyType="{e(self.policy_type)}"'
            f' PolicyCategory="{e(self.policy_category)}" PolicyFlags="{self.policy_flags:d}">'
            f"<PolicyLocation>{escape_text(self.location_url)}</PolicyLocation></Policy></PolicyAssignment>"
        )

    @classmethod
    def from_element(cls, element: ET.Element) -> Self:
        """Read one ``<PolicyAssignment>`` element, naming what is missing."""
        policy = _child(element, "Policy")
        return cls(
            policy_id=_attr(policy, "PolicyID"),
            policy_version=_attr(policy, "PolicyVersion"),
            policy_type=_attr(policy, "PolicyType"),
            policy_category=_attr(policy, "PolicyCategory"),
            policy_flags=_int(_attr(policy, "PolicyFlags"), "PolicyFlags"),
            location_url=_child_text(policy, "PolicyLocation"),
            assignment_id=element.get("PolicyAssignmentID", ""),
        )


@dataclass(frozen=True, slots=True)
class ReplyAssignments:
    """``ReplyAssignments``: the policy assignments that apply to the requesting client."""

    ROOT: ClassVar[str] = "ReplyAssignments"

    assignments: tuple[PolicyAssignment, ...]

    def to_xml(self) -> str:
        """The reply as XML."""
        body = "".join(a.to_xml() for a in self.assignments)
        return f'<{self.ROOT} SchemaVersion="1.00" ReplyType="Full">{body}</{self.ROOT}>'

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a reply, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        return cls(assignments=tuple(PolicyAssignment.from_element(a) for a in root.iterfind("PolicyAssignment")))


@dataclass(frozen=True, slots=True)
class PolicyBody:
    """A policy body as ``GET /SMS_MP/.sms_pol?…`` returns it; ``body`` is the policy's payload text."""

    ROOT: ClassVar[str] = "Policy"

    policy_id: str
    policy_version: str
    body: str

    def to_xml(self) -> str:
        """The policy as XML."""
        # synthetic: not the public ConfigMgr format (the payload is carried as escaped text, not CDATA)
        return (
            f'<{self.ROOT} PolicyID="{escape_attr(self.policy_id)}" PolicyVersion="{escape_attr(self.policy_version)}">'
            f'<PolicyAction PolicyActionType="WMI-XML">{escape_text(self.body)}</PolicyAction></{self.ROOT}>'
        )

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a policy, naming what is missing."""
        root = parse_xml(text)
        _expect_root(root, cls.ROOT)
        return cls(
            policy_id=_attr(root, "PolicyID"),
            policy_version=_attr(root, "PolicyVersion"),
            body=_child_text(root, "PolicyAction"),
        )


AnyMessage = (
    RegistrationRequest
    | RegistrationResponse
    | SiteInformationRequest
    | SiteInfoReply
    | ContentLocationRequest
    | ContentLocationReply
    | MPList
    | RequestAssignments
    | ReplyAssignments
    | PolicyBody
)

#: Message classes by root element name, for dispatching a body whose type the endpoint alone does not fix.
MESSAGE_TYPES: dict[str, type[AnyMessage]] = {
    cls.ROOT: cls
    for cls in (
        RegistrationRequest,
        RegistrationResponse,
        SiteInformationRequest,
        SiteInfoReply,
        ContentLocationRequest,
        ContentLocationReply,
        MPList,
        RequestAssignments,
        ReplyAssignments,
        PolicyBody,
    )
}


def message_from_xml(text: str) -> AnyMessage:
    """Read any known message, choosing the class by its root element."""
    tag = root_tag(text)
    cls = MESSAGE_TYPES.get(tag)
    if cls is None:
        raise MessageError(f"unknown message root <{tag}>")
    return cls.from_xml(text)
