"""Round-trips per second of the CCM messaging codec on one core: the client's hot path, build to parse and back."""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

from cmg_protocol import envelope, messages, urlmap

ROLE_ID = "72186325152220500"


def policy_request_roundtrip() -> object:
    """Build a policy request, encode it, decode it and parse it, as client and MP together do once per poll."""
    request = messages.RequestAssignments(
        client_id="GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
        fqdn="device0001.corp.example",
        netbios_name="DEVICE0001",
        sid="S-1-5-21-1527250992-855612568-2252598708-1604",
        site_code="MEM",
    )
    header = envelope.MessageHeader(
        target_endpoint="MP_PolicyManager",
        source_id="GUID:C66EE0FD-08E7-4B38-B282-7E6954B71139",
        source_host="DEVICE0001",
        target_host="cmg.example",
        message_id="{BD03DEED-D09A-4E63-ADAD-596376FFB0DA}",
        sent_time="2020-06-24T15:31:46Z",
    )
    data = envelope.encode_message(header, request.to_xml())
    message = envelope.decode_message(envelope.CONTENT_TYPE, data)
    return messages.RequestAssignments.from_xml(message.body_xml)


_ASSIGNMENTS = tuple(
    messages.PolicyAssignment(
        policy_id=f"{{4E4AB4BC-0000-4000-8000-{index:012X}}}",
        policy_version="1.00",
        policy_type="Machine",
        policy_category="ClientAgentConfig",
        policy_flags=4,
        location_url=messages.policy_location(f"{{4E4AB4BC-0000-4000-8000-{index:012X}}}", "1.00"),
        assignment_id=f"{{A0000000-0000-4000-8000-{index:012X}}}",
    )
    for index in range(6)
)


def policy_reply_roundtrip() -> object:
    """Build the MP's six-assignment reply, encode it, decode it and parse it."""
    reply = messages.ReplyAssignments(assignments=_ASSIGNMENTS)
    header = envelope.MessageHeader(
        target_endpoint="SccmMessaging",
        source_host="MP.MYCORP.COM",
        target_host="DEVICE0001",
        message_id="{36EE3A78-8F6E-425F-BF5C-8460E8E56C33}",
        correlation_id="{BD03DEED-D09A-4E63-ADAD-596376FFB0DA}",
        sent_time="2020-06-24T15:31:46Z",
    )
    data = envelope.encode_message(header, reply.to_xml())
    message = envelope.decode_message(envelope.CONTENT_TYPE, data)
    return messages.ReplyAssignments.from_xml(message.body_xml)


def url_match() -> object:
    """Match one messaging path against the CMG's URL map."""
    return urlmap.match(f"/CCM_Proxy_ServerAuth/{ROLE_ID}/ccm_system_tokenauth/request")


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls of ``fn`` per second over about ``seconds`` of wall time."""
    fn()  # warm up caches (compiled regexes, codecs)
    calls, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        calls += 200
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case (default 2)")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the figure claims
    for name, fn in (
        ("policy request build+encode+decode+parse", policy_request_roundtrip),
        ("policy reply (6 assignments) build+encode+decode+parse", policy_reply_roundtrip),
        ("urlmap.match", url_match),
    ):
        per_second = rate(fn, args.seconds)
        print(f"{name:<58} {per_second:>10,.0f} /s  {1e6 / per_second:7.1f} us each")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
