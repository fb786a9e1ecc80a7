"""Policy messages (MP_PolicyManager): policy assignment requests and replies, and the policy bodies they point to."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import IntFlag
from typing import ClassVar, Self
from urllib.parse import quote

from .xmlbase import (
    MessageError,
    as_int,
    child_text,
    escape_attr,
    escape_text,
    expect_root,
    parse_int,
    parse_xml,
    required_attr,
    required_child,
)

#: The placeholder the MP leaves in policy locations; the client puts its MP (or CMG) address in its place.
MP_PLACEHOLDER = "<mp>"


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
        expect_root(root, cls.ROOT)
        machine = required_child(root, "Identification/Machine")
        source = child_text(root, "PolicySource")
        if not source.startswith("SMS:"):
            raise MessageError(f"PolicySource must be SMS:<site code>, got {source!r}")
        return cls(
            client_id=child_text(machine, "ClientID"),
            fqdn=child_text(machine, "FQDN"),
            netbios_name=child_text(machine, "NetBIOSName"),
            sid=child_text(machine, "SID"),
            site_code=source[4:],
            resource_type=required_attr(required_child(root, "Resource"), "ResourceType"),
        )


class PolicyFlags(IntFlag):
    """The bits of a policy's ``PolicyFlags``, by the names the client tools and SDK give them."""

    NONE = 0
    TASKSEQUENCE = 0x01
    REQUIRESAUTH = 0x02  # the body is fetched with ClientToken / ClientTokenSignature
    SECRET = 0x04  # the body is CMS EnvelopedData for the client's encryption certificate
    INTRANETONLY = 0x08
    PERSISTWHOLEPOLICY = 0x10
    AUTHORIZEDDYNAMICDOWNLOAD = 0x20
    COMPRESSED = 0x40


_SHA256_HEX = re.compile(r"[0-9A-F]{64}")
_VERSION = re.compile(r"\d{1,9}\.\d{2}")


def policy_location(policy_id: str, policy_version: str, *, sha256: str | None = None) -> str:
    """The ``<mp>``-relative URL of a policy body, as the MP puts it in a ``PolicyLocation``.

    With ``sha256`` (the body's hash, 64 hex digits) the query is ``{id}.SHA256:<HEX>``, else ``{id}.<n>_00`` for
    version ``n.00``: the two shapes public logs and tools show.
    """
    if sha256 is not None:
        if not _SHA256_HEX.fullmatch(sha256.upper()):
            raise MessageError(f"policy hash must be 64 hex digits, got {sha256[:80]!r}")
        tail = f"SHA256:{sha256.upper()}"
    else:
        if not _VERSION.fullmatch(policy_version):
            raise MessageError(f"PolicyVersion must be <n>.<nn>, got {policy_version[:40]!r}")
        tail = policy_version.replace(".", "_")
    query = quote(f"{policy_id}.{tail}", safe="{}-._~:@!$'()*+,;=")
    return f"http://{MP_PLACEHOLDER}/SMS_MP/.sms_pol?{query}"


def policy_query_parts(query: str) -> tuple[str, str]:
    """The policy id and the version-or-hash tail of a ``.sms_pol`` query (``{id}.1_00``, ``{id}.SHA256:…``)."""
    policy_id, separator, tail = query.rpartition(".")
    if not separator or not policy_id or not tail:
        raise MessageError(f"policy query is not <id>.<version>_00 or <id>.SHA256:<hex>: {query[:80]!r}")
    return policy_id, tail


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
        object.__setattr__(self, "policy_flags", as_int(self.policy_flags, "PolicyFlags"))
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
        policy = required_child(element, "Policy")
        return cls(
            policy_id=required_attr(policy, "PolicyID"),
            policy_version=required_attr(policy, "PolicyVersion"),
            policy_type=required_attr(policy, "PolicyType"),
            policy_category=required_attr(policy, "PolicyCategory"),
            policy_flags=parse_int(required_attr(policy, "PolicyFlags"), "PolicyFlags"),
            location_url=child_text(policy, "PolicyLocation"),
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
        expect_root(root, cls.ROOT)
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

    def to_bytes(self) -> bytes:
        """The body as served: UTF-16LE with a byte order mark."""
        return b"\xff\xfe" + self.to_xml().encode("utf-16-le")

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Read a served body: UTF-16 with a byte order mark (a NUL terminator, as in a decrypted one, is dropped)."""
        if data[:2] not in (b"\xff\xfe", b"\xfe\xff"):
            raise MessageError("policy body is not UTF-16 with a byte order mark")
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise MessageError(f"policy body is not valid UTF-16: {exc.reason}") from None
        return cls.from_xml(text.rstrip("\x00"))

    @classmethod
    def from_xml(cls, text: str) -> Self:
        """Read a policy, naming what is missing."""
        root = parse_xml(text)
        expect_root(root, cls.ROOT)
        return cls(
            policy_id=required_attr(root, "PolicyID"),
            policy_version=required_attr(root, "PolicyVersion"),
            body=child_text(root, "PolicyAction"),
        )
