"""What a client life puts on the wire besides the protocol bodies: the User-Agent of ccmsetup and CCMHTTP on its GETs,
the messaging User-Agent on CCM_POST, and a CCM token request body of the size the CMG's log samples show."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from cmg_protocol import envelope, sts_request
from cmg_protocol.clock import system_clock
from harness.client.events import STEP_ENTRA_TOKEN, Request, SiteEndpoints
from harness.client.lifecycle import Lifecycle
from harness.client.transport import (
    CCM_HTTP_USER_AGENT,
    HttpxDriver,
    TrustStore,
    device_from_traits,
    site_client_certs,
    wire_headers,
)
from mock_site.testing import RunningSite, running_site


def _request(method: str, headers: dict[str, str] | None = None, step: str = "site_info") -> Request:
    return Request(method, "https://cmg.example/x", headers or {}, b"", "/x", "install", step)


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_gets_to_the_site_carry_the_ccmhttp_user_agent(method: str) -> None:
    assert wire_headers(_request(method, {"Authorization": "Bearer t"})) == {
        "Authorization": "Bearer t", "User-Agent": "SMS CCM 5.0"}
    assert CCM_HTTP_USER_AGENT == "SMS CCM 5.0"


def test_other_requests_keep_their_own_headers() -> None:
    """POSTs (CCM_POST and CCM_STS), Entra ID's requests and a request naming its own User-Agent are left alone."""
    for request in (_request("POST", {"a": "b"}), _request(envelope.CCM_POST, {"User-Agent": envelope.USER_AGENT}),
                    _request("GET", {}, step=STEP_ENTRA_TOKEN), _request("GET", {"user-agent": "Microsoft BITS/7.8"})):
        assert wire_headers(request) == request.headers


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    with running_site(tmp_path_factory.mktemp("site"), time_scale=3600) as running:
        yield running


class RecordingDriver(HttpxDriver):
    """The httpx driver, noting what each request carried as it left."""

    def __init__(self, trust: TrustStore) -> None:
        super().__init__(trust, timeout=10)
        self.sent: list[httpx.Request] = []

    def _client(self, ctx: Any) -> httpx.Client:
        client = super()._client(ctx)
        if self._note not in client.event_hooks["request"]:
            client.event_hooks["request"].append(self._note)
        return client

    def _note(self, request: httpx.Request) -> None:
        request.read()
        self.sent.append(request)


def test_a_client_life_sends_real_client_headers_and_token_request_sizes(site: RunningSite) -> None:
    manifest = site.manifest
    profile = device_from_traits(manifest, "", seed=7)
    trust = TrustStore(manifest.ca_file, client_certs=site_client_certs(manifest))
    life = Lifecycle(profile, SiteEndpoints.from_manifest(manifest), clock=system_clock, rng=random.Random(7), polls=1)
    try:
        with RecordingDriver(trust) as driver:
            outcome = driver.run(life)
    finally:
        trust.close()
    assert outcome.success
    to_site = [r for r in driver.sent if r.url.host == httpx.URL(manifest.cmg_url).host and "/oauth2/" not in r.url.path]
    gets = [r for r in to_site if r.method == "GET"]
    posts = [r for r in to_site if r.method == envelope.CCM_POST]
    sts = [r for r in to_site if r.url.path.endswith("/CCM_STS")]
    assert gets and posts and sts
    assert {r.headers["user-agent"] for r in gets} == {"SMS CCM 5.0"}
    assert {r.headers["user-agent"] for r in posts} == {envelope.USER_AGENT}
    for request in sts:
        # CMGService.log's samples: about 1.4 to 2 KB per token request.
        assert 1000 <= len(request.content) <= 2600, len(request.content)
        asked = sts_request.StsRequest.from_body(request.content)
        assert request.headers["authorization"] == f"Bearer {asked.assertion}"
        assert request.headers["content-type"] == sts_request.CONTENT_TYPE
