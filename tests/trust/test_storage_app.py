"""The CMG's storage called as an ASGI app: exactly the signed URL's content is served, a refused URL is 403
AuthenticationFailed with the reason, HEAD answers the size without the bytes, egress is counted per client for GETs
only, and each storage fault acts as documented."""

from __future__ import annotations

import asyncio
import random
from urllib.parse import urlsplit

import pytest

from cmg_protocol import storage_urls as su
from cmg_protocol.storage_urls import UrlSigner
from mock_site.faults.middleware import ConnectionResetFault
from mock_site.faults.registry import FaultRegistry
from mock_site.state_dir import SiteStateError
from mock_site.storage import DOWNLOAD_NAME, StorageApp, changed, load_or_create_url_key
from tests.trust.asgi_calls import Answer, Metrics, Steps, call

NOW = 1_750_000_000.0
KEY = b"s" * 32
BLOB = bytes(range(256)) * 8


class Content:
    def content(self, package: str, name: str) -> bytes:
        assert (package, name) == ("CS100001", "ccmsetup.cab")
        return BLOB


class Egress:
    def __init__(self) -> None:
        self.served_to: list[tuple[str, int]] = []

    def served(self, object_id: str, size: int) -> None:
        self.served_to.append((object_id, size))


class Storage:
    def __init__(self) -> None:
        self.now = NOW
        self.faults = FaultRegistry(lambda: self.now, random.Random(1))
        self.metrics, self.egress, self.slept = Metrics(), Egress(), []
        self.signer = UrlSigner(KEY, issuer="urn:sccm:cmg:1")

        async def sleep(seconds: float) -> None:
            self.slept.append(seconds)
        self.app = StorageApp(signer=self.signer, content=Content(), faults=self.faults, metrics=self.metrics,
                              egress=self.egress, clock=lambda: self.now, sleep=sleep, perf_counter=Steps(0.25))

    def url(self, *, start: float = NOW - 60, expiry: float = NOW + 600, path: str | None = None) -> tuple[str, str]:
        signed = self.signer.sign("https://127.0.0.1:8445/", path or su.content_path("CS100001", "ccmsetup.cab"),
                                  tenant_id="t", object_id="GUID:A", start=start, expiry=expiry)
        parts = urlsplit(signed)
        return parts.path, parts.query

    def get(self, method: str = "GET", **url: float) -> Answer:
        path, query = self.url(**url)
        answer, _ = call(self.app, method, path, query=query)
        return answer


def test_a_signed_url_gets_its_content_and_counts_egress_for_its_client() -> None:
    storage = Storage()
    answer = storage.get()
    assert (answer.status, answer.body, answer.headers["content-type"]) == (200, BLOB, "application/octet-stream")
    assert storage.egress.served_to == [("GUID:A", len(BLOB))]
    assert storage.metrics.of("observe") == [(DOWNLOAD_NAME, "GET", 200, 0, len(BLOB), 0.25)]
    assert storage.metrics.of("error") == []


def test_head_answers_the_size_without_the_bytes_and_counts_no_egress() -> None:
    storage = Storage()
    answer = storage.get("HEAD")
    assert (answer.status, answer.body, answer.headers["content-length"]) == (200, b"", str(len(BLOB)))
    assert storage.egress.served_to == []


def _assert_refused(storage: Storage, answer: Answer, kind: str, reason: str) -> None:
    assert (answer.status, answer.reason, answer.headers["x-cmg-status-text"]) == (403, "AuthenticationFailed",
                                                                                   "AuthenticationFailed")
    assert answer.text == f"AuthenticationFailed: {reason}"
    assert storage.metrics.of("token_rejected") == [(kind,)]
    assert storage.metrics.of("error") == [(DOWNLOAD_NAME, 403, "AuthenticationFailed")]
    assert storage.egress.served_to == []


def test_an_expired_url_is_refused_from_its_expiry_on() -> None:
    storage = Storage()
    storage.now = NOW + 599
    assert storage.get().status == 200
    storage.egress.served_to.clear()
    storage.metrics.calls.clear()
    storage.now = NOW + 600
    _assert_refused(storage, storage.get(), su.EXPIRED, "the URL expired at 2025-06-15T15:16:40Z")


def test_a_url_before_its_start_is_refused() -> None:
    storage = Storage()
    _assert_refused(storage, storage.get(start=NOW + 1, expiry=NOW + 600), su.NOT_YET_VALID,
                    "the URL is valid from 2025-06-15T15:06:41Z")


def test_a_url_signed_for_other_content_is_refused() -> None:
    storage = Storage()
    _, query = storage.url(path=su.content_path("CS100002", "ccmsetup.cab"))
    answer, _ = call(storage.app, "GET", su.content_path("CS100001", "ccmsetup.cab"), query=query)
    _assert_refused(storage, answer, su.BAD_SIGNATURE, "the signature does not match the URL")


@pytest.mark.parametrize("path", ["/content/CS100001", "/content/CS100001/ccmsetup.cab/x", "/other/CS100001/a",
                                  "/content//ccmsetup.cab", "/content/CS100001/"])
def test_a_path_that_is_no_content_is_not_found(path: str) -> None:
    storage = Storage()
    answer, _ = call(storage.app, "GET", path)
    assert (answer.status, answer.reason, answer.text) == (404, "ResourceNotFound", "ResourceNotFound: no such content")


def test_only_get_and_head_are_served() -> None:
    storage = Storage()
    answer = storage.get("POST")
    assert (answer.status, answer.reason, answer.text) == (405, "UnsupportedHttpVerb",
                                                           "UnsupportedHttpVerb: POST is not allowed on storage")


def test_storage_slow_answers_late_by_its_latency() -> None:
    storage = Storage()
    storage.faults.set("storage_slow", params={"latency_ms": 1500})
    assert storage.get().status == 200
    assert storage.slept == [1.5]


def test_storage_unreachable_resets_the_connection_and_is_counted_as_499() -> None:
    storage = Storage()
    storage.faults.set("storage_unreachable")
    path, query = storage.url()
    with pytest.raises(ConnectionResetFault):
        call(storage.app, "GET", path, query=query)
    assert storage.metrics.of("observe") == [(DOWNLOAD_NAME, "GET", 499, 0, 0, 0.25)]
    assert storage.metrics.in_flight == 0


def test_signed_url_expired_refuses_a_url_that_is_still_valid() -> None:
    storage = Storage()
    storage.faults.set("signed_url_expired")
    _assert_refused(storage, storage.get(), su.EXPIRED, "the URL counts as expired (fault signed_url_expired)")


def test_content_hash_mismatch_serves_other_bytes_of_the_same_size_to_get_only() -> None:
    storage = Storage()
    storage.faults.set("content_hash_mismatch")
    head = storage.get("HEAD")
    assert (head.status, head.headers["content-length"]) == (200, str(len(BLOB)))
    answer = storage.get()
    assert answer.status == 200 and len(answer.body) == len(BLOB)
    assert answer.body[:-1] == BLOB[:-1] and answer.body[-1] == BLOB[-1] ^ 0xFF
    assert storage.egress.served_to == [("GUID:A", len(BLOB))]
    assert storage.faults.injections()["content_hash_mismatch"] == 1  # the GET, not the HEAD


def test_changed_content_keeps_its_size_and_empty_content_stays_empty() -> None:
    assert changed(b"\x00\x01") == b"\x00\xfe"
    assert changed(b"") == b""


def test_a_websocket_or_lifespan_scope_is_left_alone() -> None:
    storage = Storage()
    answer, _ = call(storage.app, "GET", "/content/CS100001/ccmsetup.cab", scope_type="lifespan")
    assert answer.status == 0 and storage.metrics.calls == []


def test_the_url_key_is_made_once_and_kept(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "state" / "pki"  # type: ignore[operator]  # neither exists yet
    first = load_or_create_url_key(folder)
    assert len(first) == 32 and load_or_create_url_key(folder) == first
    assert (folder / "storage-url.key").stat().st_mode & 0o777 == 0o600
    (folder / "storage-url.key").write_bytes(b"short")
    with pytest.raises(SiteStateError, match=r"^storage URL key '.*/pki/storage-url.key' holds 5 bytes, not 32: remove "
                                             r"it \(with the site stopped\) to have a new one made$"):
        load_or_create_url_key(folder)
    assert (folder / "storage-url.key").read_bytes() == b"short"  # nothing already stored is lost


def test_two_processes_racing_to_make_the_key_end_with_one(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "pki"  # type: ignore[operator]

    async def both() -> list[bytes]:
        return list(await asyncio.gather(*(asyncio.to_thread(load_or_create_url_key, folder) for _ in range(8))))
    keys = asyncio.run(both())
    assert len(set(keys)) == 1 and [p.name for p in folder.iterdir()] == ["storage-url.key"]


def test_a_key_is_made_in_a_pki_folder_that_exists_without_one(tmp_path: pytest.TempPathFactory) -> None:
    folder = tmp_path / "pki"  # type: ignore[operator]
    folder.mkdir()
    assert len(load_or_create_url_key(folder)) == 32
