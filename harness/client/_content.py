"""Content download as a client of a content-enabled CMG does it: the content XML from the CMG, the bytes from storage.

``getcontentxmlsecure`` on the CMG answers with a small XML holding a short-lived signed URL on the CMG's storage; the
client downloads from there with no token (the URL is the credential) and checks the bytes against the size and the
SHA-256 hash the XML announced. When storage refuses the URL (``403``, an expired or bad signature) the client asks the
CMG once for a new one. A CMG without a storage endpoint, or a proxy that forwards the request to the management point,
answers with the bytes themselves: then that answer is the download.
"""

from __future__ import annotations

import hashlib
from functools import partial
from urllib.parse import urlsplit

from cmg_protocol.storage_urls import CONTAINER, ContentXml
from cmg_protocol.xmlbase import MessageError
from harness.client import outcome as oc
from harness.client._exchange import Step
from harness.client._tokens import TokenSteps
from harness.client.clientlogs import CCMSETUP, ERROR, WARNING
from harness.client.events import STAGE_INSTALL, STEP_CONTENT_DOWNLOAD, STEP_CONTENT_XML, Request, Response

#: The request name of a storage download (one name for every package, for statistics).
STORAGE_DOWNLOAD_NAME = f"/{CONTAINER}"
#: How many content XMLs (signed URLs) a client asks for per download: the first, and one after a refused URL.
URL_ATTEMPTS = 2


def _storage_get(url: str) -> Request:
    """The download from storage: no token and no client certificate (the signed URL is the credential)."""
    return Request("GET", url, {}, b"", STORAGE_DOWNLOAD_NAME, STAGE_INSTALL, STEP_CONTENT_DOWNLOAD)


class ContentSteps(TokenSteps):
    """The content download steps of a life."""

    __slots__ = ()

    def _download(self, url: str, *, mutual: bool) -> Step:
        """Download the content ``url`` (a getcontentxmlsecure address) names, from storage when the CMG says so."""
        name = urlsplit(url).path
        for attempt in range(1, URL_ATTEMPTS + 1):
            if mutual:
                reply = yield from self._exchange(lambda: Request("GET", url, {}, b"", name, STAGE_INSTALL,
                                                                  STEP_CONTENT_XML, client_cert=True))
            else:
                reply = yield from self._ccm_exchange(lambda: self._get(url, name, STAGE_INSTALL, STEP_CONTENT_XML),
                                                      STAGE_INSTALL)
            assert isinstance(reply, Response)
            if not reply.content_type.startswith("text/xml"):
                return  # the bytes themselves: served by the CMG or the management point behind it
            try:
                info = ContentXml.from_xml(reply.body.decode("utf-8"))
            except (MessageError, UnicodeDecodeError) as exc:
                self._fail_reply(STEP_CONTENT_XML, STAGE_INSTALL, f"content XML unreadable: {exc}")
            self._write(CCMSETUP, f"Downloading content {info.package_id} from cloud storage "  # synthetic wording
                                  f"'{info.url.split('?', 1)[0]}'")
            request, answer, reason = yield from self._send(partial(_storage_get, info.url))
            if reason is None:
                assert isinstance(answer, Response)
                if len(answer.body) != info.size:
                    self._fail_reply(STEP_CONTENT_DOWNLOAD, STAGE_INSTALL,
                                     f"storage sent {len(answer.body)} bytes, the content XML announced {info.size}")
                # ccmsetup installs only content whose hash matches the one its content information announced: bytes
                # changed on the way (by a proxy, a cache, storage) with their length kept must not pass as installed.
                digest = hashlib.sha256(answer.body).hexdigest().upper()
                if digest != info.sha256.upper():
                    self._write(CCMSETUP, f"Content {info.package_id} has hash {digest}, expected {info.sha256}: "
                                          f"0x{oc.CRYPT_E_HASH_VALUE:08x}", ERROR)  # synthetic wording
                    self._fail_step(oc.CONTENT_HASH_MISMATCH, STEP_CONTENT_DOWNLOAD, STAGE_INSTALL,
                                    f"content {info.package_id} has SHA-256 {digest}, the content XML announced "
                                    f"{info.sha256}", error_code=oc.CRYPT_E_HASH_VALUE)
                return
            if reason != oc.STORAGE_403 or attempt == URL_ATTEMPTS:
                self._fail(reason, request, answer)
            refused = answer.reason if isinstance(answer, Response) else reason
            self._write(CCMSETUP, f"Cloud storage refused the content URL ({refused}); asking for a new one",
                        WARNING)  # synthetic wording
