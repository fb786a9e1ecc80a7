"""What one listener of the site lets a client hold: time to send its headers, header sizes, open connections.

A value object of its own (no server imports) so that the site's configuration can carry it; :mod:`mock_site.server`
enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Time a new connection has to finish its TLS handshake and send complete request headers, and a kept-alive one to
#: send the rest of its headers once a request has begun (http.sys waits 120 s; a test site needs no such patience).
HEADER_TIMEOUT_S = 30.0
#: The longest request header line (name and value) and request target: IIS / http.sys's MaxFieldLength default.
MAX_HEADER_BYTES = 16 * 1024
#: Request line and all headers together. http.sys's MaxRequestBytes default is 16 KiB; four header lines' worth leaves
#: room for long Entra tokens next to a forwarded client certificate, and still bounds what a client can make us hold.
MAX_REQUEST_HEADERS_BYTES = 64 * 1024
#: Open connections one listener (one role instance) serves at once; beyond it new connections are refused.
MAX_CONNECTIONS_PER_LISTENER = 4096


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What one listener lets a client hold: time to send headers, header sizes, and open connections."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    max_header_bytes: int = MAX_HEADER_BYTES
    max_request_headers_bytes: int = MAX_REQUEST_HEADERS_BYTES
    max_connections: int = MAX_CONNECTIONS_PER_LISTENER

    def __post_init__(self) -> None:
        if not 0 < self.header_timeout_s <= 3600:
            raise ValueError(f"header timeout must be in (0, 3600] s, got {self.header_timeout_s!r}")
        if not 256 <= self.max_header_bytes <= self.max_request_headers_bytes:
            raise ValueError(f"max header bytes must be 256..max request headers bytes "
                             f"({self.max_request_headers_bytes}), got {self.max_header_bytes!r}")
        if not self.max_request_headers_bytes <= 16 * 1024 * 1024:
            raise ValueError(f"max request headers bytes must be <= 16 MiB, got {self.max_request_headers_bytes!r}")
        if not 1 <= self.max_connections <= 1_000_000:
            raise ValueError(f"max connections must be 1..1000000, got {self.max_connections!r}")
