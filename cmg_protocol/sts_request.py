"""The body of a CCM token request (``POST .../CCM_STS``): what the client sends beside its Entra token.

The public record shows the size (CMGService.log: about 1.4 to 2 KB per token request through the CMG), not the bytes.
The body here is an OAuth 2.0 JWT-bearer grant (RFC 7523) carrying the Entra token again as the assertion, the
resource and the client's identity, which gives a request of that size.
"""

# synthetic: not the public ConfigMgr format (the whole CCM_STS request body)

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from cmg_protocol.tokens import CCM_AUDIENCE

CONTENT_TYPE = "application/x-www-form-urlencoded"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: Upper bound on a body the STS reads (the URL map's limit for CCM_STS is larger; this is the parser's own).
MAX_BODY_BYTES = 16 * 1024
_FIELDS = ("grant_type", "assertion", "resource", "client_id", "agent_version", "client_host")


class StsRequestError(ValueError):
    """A token request body the STS cannot take; the message names the field."""


@dataclass(frozen=True, slots=True)
class StsRequest:
    """One CCM token request: the Entra token as the assertion and who asks."""

    assertion: str
    client_id: str  # GUID:<SMSID> once registered, "" before
    agent_version: str
    client_host: str
    resource: str = CCM_AUDIENCE

    def to_body(self) -> bytes:
        """The form-encoded body."""
        return urlencode({"grant_type": GRANT_TYPE, "assertion": self.assertion, "resource": self.resource,
                          "client_id": self.client_id, "agent_version": self.agent_version,
                          "client_host": self.client_host}).encode("ascii")

    @classmethod
    def from_body(cls, body: bytes) -> StsRequest:
        """Read a body, refusing one that is not a JWT-bearer grant for the CCM audience."""
        if len(body) > MAX_BODY_BYTES:
            raise StsRequestError(f"token request body is {len(body)} bytes, over {MAX_BODY_BYTES}")
        try:
            text = body.decode("ascii")
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
        except (UnicodeDecodeError, ValueError):
            raise StsRequestError("token request body is not an ASCII form") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            if name not in _FIELDS:
                raise StsRequestError(f"token request has an unknown field {name[:40]!r}")
            if name in fields:
                raise StsRequestError(f"token request has the field {name!r} twice")
            fields[name] = value
        if fields.get("grant_type") != GRANT_TYPE:
            raise StsRequestError(f"grant_type must be {GRANT_TYPE}, got {fields.get('grant_type', '')[:60]!r}")
        if fields.get("resource") != CCM_AUDIENCE:
            raise StsRequestError(f"resource must be {CCM_AUDIENCE}, got {fields.get('resource', '')[:60]!r}")
        if not fields.get("assertion"):
            raise StsRequestError("token request carries no assertion")
        return cls(assertion=fields["assertion"], client_id=fields.get("client_id", ""),
                   agent_version=fields.get("agent_version", ""), client_host=fields.get("client_host", ""),
                   resource=fields["resource"])
