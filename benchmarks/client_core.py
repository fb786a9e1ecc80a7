"""How fast the sans-I/O client core is, and how much memory one simulated device costs.

Round trips here are "build the request, parse the reply" with no network: the lifecycle, the CCM messaging envelope,
XML, zlib and JSON. Replies are recorded once from the scripted site and replayed, so the figures measure the client
alone. Targets (issue 3): >= 20,000 round trips/s on one core, <= 4 KiB of state per device over 100,000 devices.

    python benchmarks/client_core.py [--devices 100000] [--lives 2000]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import tracemalloc
from collections.abc import Callable

from cmg_protocol.clock import FakeClock
from harness.client import events as ev
from harness.client import lifecycle as lc
from harness.client.device import Fleet, FleetMix, SmsSigningIdentity
from harness.client.events import Done, Request, Response, Wait
from harness.client.testing import ScriptedSite, scripted_endpoints

TENANT = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"


class CannedSite:
    """Replays one recorded reply per step (per URL for policy bodies): the site costs nothing during the timing."""

    def __init__(self, clock: FakeClock) -> None:
        recorder = ScriptedSite(clock)
        recorder.record = False
        self.replies: dict[str, Response] = {}
        self.bodies: dict[str, Response] = {}
        life = lc.Lifecycle(Fleet(0, tenant_ids=[TENANT]).device(0), scripted_endpoints(), clock=clock,
                            rng=random.Random(0), polls=1)
        while True:
            action = life.next_request()
            if isinstance(action, Done):
                break
            if isinstance(action, Wait):
                clock.now = action.until
                continue
            reply = recorder.answer(action)
            assert type(reply) is Response
            if action.step == ev.STEP_POLICY_BODY:
                self.bodies[action.url] = reply
            else:
                self.replies.setdefault(action.step, reply)
            life.feed(reply)
        assert action.outcome.success, action.outcome

    def drive(self, life: lc.Lifecycle) -> int:
        """Answer ``life`` until it waits or ends; returns the round trips made."""
        replies, bodies = self.replies, self.bodies
        count = 0
        action = life.next_request()
        while isinstance(action, Request):
            life.feed(bodies[action.url] if action.step == ev.STEP_POLICY_BODY else replies[action.step])
            count += 1
            action = life.next_request()
        return count


def timed(label: str, work: Callable[[], int]) -> float:
    # Process CPU time, not wall time: "per second on one core" should not depend on what else the machine runs.
    started = time.process_time()
    trips = work()
    elapsed = time.process_time() - started
    rate = trips / elapsed
    print(f"  {label:<48} {rate:>10,.0f} round trips/s  ({trips:,} in {elapsed:.2f} s CPU)")
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=100_000, help="devices for the memory measurement")
    parser.add_argument("--lives", type=int, default=2_000, help="whole lives for the speed measurement")
    args = parser.parse_args()

    clock = FakeClock()
    canned = CannedSite(clock)
    site = scripted_endpoints()
    fleet = Fleet(7, FleetMix(), [TENANT])
    rng = random.Random(1)
    profiles = [fleet.device(i) for i in range(args.lives)]
    SmsSigningIdentity.shared()  # made once per process; not part of any device's life
    lives: list[lc.Lifecycle] = []

    print(f"client core speed (one core, {args.lives:,} devices, no logs, no trail)")

    def whole_lives() -> int:
        trips = 0
        for profile in profiles:
            life = lc.Lifecycle(profile, site, clock=clock, rng=rng, polls=None, trail=False)
            trips += canned.drive(life)
            lives.append(life)
        return trips

    timed("install + registration + first poll", whole_lives)

    def polls() -> int:
        clock.now += site.policy_interval_s
        return sum(canned.drive(life) for life in lives)

    timed("steady-state policy poll", lambda: polls() + polls())

    def renewals() -> int:
        clock.now += 7.5 * 3600  # past 90 % of the 8 h CCM token: every poll renews (Entra token, CCM_STS, poll)
        return sum(canned.drive(life) for life in lives)

    timed("policy poll with CCM token renewal", renewals)

    def registration_signatures() -> int:
        identity = SmsSigningIdentity.shared()
        data = ("<Data " + "x" * 1900 + "/>").encode("utf-16-le")
        for _ in range(200):
            identity.sign(data)
        return 200

    started = time.process_time()
    registration_signatures()
    print(f"  (of the install figure: the registration's RSA-2048 signature costs "
          f"{(time.process_time() - started) / 200 * 1e6:,.0f} us CPU once per device)")

    print(f"\nmemory per device ({args.devices:,} devices, tracemalloc)")
    lives.clear()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    held: list[lc.Lifecycle] = []
    for index in range(args.devices):
        life = lc.Lifecycle(fleet.device(index), site, clock=clock, rng=rng, polls=None, trail=False)
        canned.drive(life)
        held.append(life)
        if index and index % 20_000 == 0:
            print(f"  ... {index:,} devices", flush=True)
    gc.collect()
    registered = tracemalloc.get_traced_memory()[0] - base
    clock.now += 2 * 3600  # the 75-minute Entra token has expired; the next poll lets go of it
    for life in held:
        canned.drive(life)
    gc.collect()
    steady = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    print(f"  just registered (Entra + CCM token held)   {registered / args.devices:>8,.0f} bytes/device")
    print(f"  steady state (CCM token only)               {steady / args.devices:>8,.0f} bytes/device")


if __name__ == "__main__":
    main()
