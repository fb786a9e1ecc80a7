"""Registration messages (MP_ClientRegistration): the client's registration request and the MP's reply."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from .xmlbase import (
    MessageError,
    child_text,
    escape_attr,
    escape_text,
    expect_root,
    parse_int,
    parse_xml,
    required_attr,
    required_child,
)

#: The header a registration through the CMG carries the device's Entra token in; the CCM token stays in
#: ``Authorization`` as on every CcmTokenAuth=1 request, so the CMG never has to take an Entra token there.
AAD_TOKEN_HEADER = "X-CCM-AAD-Token"  # synthetic: not the public ConfigMgr format

#: RSA with SHA-256, the hash algorithm OID a registration request names.
SHA256_RSA_OID = "1.2.840.113549.1.1.11"


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
        expect_root(root, cls.ROOT)
        data = required_child(root, "Data")
        props: dict[str, str] = {}
        for prop in required_child(data, "DiscoveryProperties").iter("Property"):
            props[required_attr(prop, "Name")] = required_attr(prop, "Value")
        for name in ("Netbios Name", "FQ Name", "Locale ID", "InternetFlag"):
            if name not in props:
                raise MessageError(f"<DiscoveryProperties> is missing Property {name!r}")
        signature = root.find("Signature/SignatureValue")
        return cls(
            netbios_name=props["Netbios Name"],
            fq_name=props["FQ Name"],
            locale_id=parse_int(props["Locale ID"], "Locale ID"),
            internet_flag=parse_int(props["InternetFlag"], "InternetFlag"),
            agent_version=required_attr(required_child(data, "AgentInformation"), "AgentVersion"),
            signing_cert_hex=child_text(data, "Certificates/Signing"),
            encryption_cert_hex=child_text(data, "Certificates/Encryption"),
            timestamp=required_attr(data, "TimeStamp"),
            smsid=required_attr(data, "SMSID"),
            request_type=required_attr(data, "RequestType"),
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
        expect_root(root, cls.ROOT)
        return cls(
            status=parse_int(required_attr(root, "Status"), "Status"),
            smsid=required_attr(root, "SMSID"),
            approval_status=parse_int(required_attr(root, "ApprovalStatus"), "ApprovalStatus"),
            timestamp=required_attr(root, "TimeStamp"),
        )
