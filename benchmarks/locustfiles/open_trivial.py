"""The open-model dispatcher against the lightest endpoint: each device fetches AADAuthInfo once per poll interval.

Used by benchmarks/open_model.py: ``--fleet N --poll-interval T`` sets the intended rate (N / T real seconds); the
dispatcher, the in-flight limit and the latency book are the real ones (OpenLifecycleUser), only the life is trivial.
"""

from __future__ import annotations

import time
from typing import Any

import cpu_meter  # noqa: F401 - the benchmark's CPU and GC instrument (benchmarks/locustfiles)
from locust import events

from harness.client.device import DeviceProfile
from harness.client.events import STAGE_POLICY, Request, Response, TransportError, Wait
from harness.load import (
    install,
    users,  # the module, not the class: Locust runs every User class it finds here
)

install(events)


class TrivialLife:
    """A device that asks for AADAuthInfo, then waits one poll interval, for ever."""

    smsid = ""
    polls_done = 0

    def __init__(self, profile: DeviceProfile, url: str, interval: float) -> None:
        self.profile = profile
        self._request = Request("GET", url, {"User-Agent": "SMS CCM 5.0"}, b"", "/CCM_Proxy_ServerAuth/AADAuthInfo",
                                STAGE_POLICY, "aad_info")
        self._interval = interval
        self._waiting = False
        self._next_at: float | None = None

    def next_request(self) -> Request | Wait:
        if self._waiting:
            # On a fixed grid from the first poll, whatever each answer took: the intended rate stays N / interval.
            self._waiting = False
            assert self._next_at is not None
            self._next_at += self._interval
            return Wait(self._next_at)
        if self._next_at is None:
            self._next_at = time.time()
        return self._request

    def feed(self, reply: Response | TransportError) -> None:
        self._waiting = True


class OpenTrivialUser(users.OpenLifecycleUser):
    def make_lifecycle(self, profile: DeviceProfile) -> Any:
        endpoints = self.run_context.endpoints
        url = endpoints.cmg_url + f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={profile.tenant_id}"
        return TrivialLife(profile, url, endpoints.policy_interval_s)
