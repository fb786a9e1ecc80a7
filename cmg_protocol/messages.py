"""Message XML carried in CCM messaging bodies and MP GET replies: build with ``to_xml()``, read with ``from_xml()``.

The messages live by concept (``registration``, ``location``, ``policy``) over the shared XML rules (``xmlbase``); this
module names them all and picks the class for a body by its root element.
"""

from __future__ import annotations

from .location import ContentLocationReply, ContentLocationRequest, MPEntry, MPList, SiteInfoReply, SiteInformationRequest
from .policy import (
    MP_PLACEHOLDER,
    PolicyAssignment,
    PolicyBody,
    ReplyAssignments,
    RequestAssignments,
    policy_location,
)
from .registration import (
    AAD_TOKEN_HEADER,
    APPROVAL_ENTRA,
    SHA256_RSA_OID,
    RegistrationRequest,
    RegistrationResponse,
    RegistrationStatus,
)
from .xmlbase import MAX_XML_CHARS, MessageError, escape_attr, escape_text, parse_xml, root_tag

__all__ = [
    "AAD_TOKEN_HEADER",
    "APPROVAL_ENTRA",
    "MAX_XML_CHARS",
    "MESSAGE_TYPES",
    "MP_PLACEHOLDER",
    "SHA256_RSA_OID",
    "AnyMessage",
    "ContentLocationReply",
    "ContentLocationRequest",
    "MPEntry",
    "MPList",
    "MessageError",
    "PolicyAssignment",
    "PolicyBody",
    "RegistrationRequest",
    "RegistrationResponse",
    "RegistrationStatus",
    "ReplyAssignments",
    "RequestAssignments",
    "SiteInfoReply",
    "SiteInformationRequest",
    "escape_attr",
    "escape_text",
    "message_from_xml",
    "parse_xml",
    "policy_location",
    "root_tag",
]


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
