"""The content-enabled CMG's cloud storage: its own HTTPS endpoint that serves content to signed URLs only.

Clients of a content-enabled CMG download content from its storage, not through the CMG's proxy path: the CMG's
``getcontentxmlsecure`` answers with a small XML holding a short-lived signed URL (:mod:`cmg_protocol.storage_urls`),
and the client fetches the bytes from here. Storage checks the signature and the validity window and nothing else
(no token: the URL is the credential), and answers as Azure storage does when it refuses one: ``403
AuthenticationFailed``.

Its faults: ``storage_slow`` (answers late), ``signed_url_expired`` (every URL counts as expired here),
``storage_unreachable`` (connections are reset) and ``content_hash_mismatch`` (the bytes served differ from the content
the CMG announced, at the same size).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cmg_protocol import storage_urls
from cmg_protocol.clock import Clock
from cmg_protocol.storage_urls import SignedUrlRejected, UrlSigner
from mock_site.asgi import HttpRequest, Meter, respond, respond_error
from mock_site.faults.middleware import ConnectionResetFault
from mock_site.server import Receive, Scope, Send
from mock_site.state_dir import SiteStateError

#: Azure storage's error code for a refused shared access signature (the status text of a 403 here).
AUTHENTICATION_FAILED = "AuthenticationFailed"
#: The role name (faults, metrics, the manifest's links and metrics URLs).
ROLE = "storage"
#: The name of the shared URL signing key in the site's PKI folder (every process of a split site reads the same one).
URL_KEY_NAME = "storage-url.key"
#: The URL signing key's size in bytes (HMAC-SHA256's block of randomness).
URL_KEY_BYTES = 32
#: The CMGService-style request name of a storage download (one name, not one per package, for statistics).
DOWNLOAD_NAME = f"/{storage_urls.CONTAINER}"

Sleep = Callable[[float], Awaitable[None]]


def load_or_create_url_key(pki_dir: Path) -> bytes:
    """The site's URL signing key: read from ``pki_dir``, or made once (32 random bytes, owner-only).

    A key file that holds fewer bytes is refused (:class:`SiteStateError` naming it) rather than replaced: another
    process of the site may already sign with it, and a silent new key would make every URL it signed fail here."""
    path = pki_dir / URL_KEY_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        pass
    else:
        if len(key) < URL_KEY_BYTES:
            raise SiteStateError(f"storage URL key {str(path)!r} holds {len(key)} bytes, not {URL_KEY_BYTES}: remove "
                                 "it (with the site stopped) to have a new one made")
        return key
    pki_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=pki_dir)  # owner-only, unique
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(os.urandom(URL_KEY_BYTES))
        # Another process of a split site may have made one meanwhile: the first one on disk wins for everybody.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def changed(blob: bytes) -> bytes:
    """``blob`` with its last byte changed: the same size, another SHA-256 (content that changed after it was
    announced, or on its way). Empty content stays empty: there is no byte to change."""
    if not blob:
        return blob
    return blob[:-1] + bytes((blob[-1] ^ 0xFF,))


class StorageApp:
    """The CMG's storage as an ASGI app: GET ``/content/<package>/<content>?<signed fields>``."""

    role = ROLE

    def __init__(self, *, signer: UrlSigner, content: Any, faults: Any, metrics: Any, egress: Any, clock: Clock,
                 sleep: Sleep = asyncio.sleep, perf_counter: Callable[[], float] = time.perf_counter) -> None:
        self.signer = signer
        self.content = content
        self.faults = faults
        self.metrics = metrics
        self.egress = egress
        self.clock = clock
        self._sleep = sleep
        self._perf = perf_counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        started = self._perf()
        request = HttpRequest.from_scope(scope)
        meter = Meter(send)
        self.metrics.request_started()
        try:
            await self._handle(request, meter)
        finally:
            self.metrics.request_finished()
            self.metrics.observe_request(DOWNLOAD_NAME, request.method, meter.status or 499, 0, meter.response_bytes,
                                         self._perf() - started)
            if meter.status_text is not None:
                self.metrics.error_response(DOWNLOAD_NAME, meter.status, meter.status_text)

    async def _handle(self, request: HttpRequest, send: Meter) -> None:
        faults = self.faults
        if (slow := faults.trigger("storage_slow", ROLE)) is not None:
            await self._sleep(float(slow.params["latency_ms"]) / 1000.0)
        if faults.trigger("storage_unreachable", ROLE) is not None:
            raise ConnectionResetFault(ROLE)
        if request.method not in ("GET", "HEAD"):
            await respond_error(send, 405, "UnsupportedHttpVerb", f"{request.method} is not allowed on storage")
            return
        parts = request.raw_path.decode("latin-1").split("/")
        if len(parts) != 4 or parts[1] != storage_urls.CONTAINER or not parts[2] or not parts[3]:
            await respond_error(send, 404, "ResourceNotFound", "no such content")
            return
        path = storage_urls.content_path(unquote(parts[2]), unquote(parts[3]))
        try:
            grant = self.signer.verify(path, request.query, now=self.clock())
            if faults.trigger("signed_url_expired", ROLE) is not None:
                raise SignedUrlRejected(storage_urls.EXPIRED, "the URL counts as expired (fault signed_url_expired)")
        except SignedUrlRejected as refused:
            self.metrics.token_rejected(refused.kind)
            await respond_error(send, 403, AUTHENTICATION_FAILED, refused.reason)
            return
        blob = self.content.content(unquote(parts[2]), unquote(parts[3]))
        if request.method == "GET" and faults.trigger("content_hash_mismatch", ROLE) is not None:
            blob = changed(blob)
        if request.method == "GET":
            # Counted as it is handed over (the client may read the answer before this coroutine runs again).
            self.egress.served(grant.object_id, len(blob))
        if request.method == "HEAD":
            # The size of what a GET would bring, without the bytes (the server sends no body for HEAD).
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream"),
                                    (b"content-length", str(len(blob)).encode())]})
            await send({"type": "http.response.body", "body": b""})
            return
        await respond(send, 200, blob, content_type="application/octet-stream")
