"""Requests and bytes per client life, by device kind: what one device's whole life puts on the wire.

Starts the mock site in-process on loopback (real TLS), runs ``--lives`` lives of each device kind with ``--polls``
policy polls, and counts every HTTP exchange the client makes: requests, request bytes (request line, headers and
body) and response bytes (status line, headers and body). Used to give
docs/fidelity.md its before/after figures: run it on two checkouts (``PYTHONPATH=<checkout>``) and compare.

Usage: python benchmarks/client_life_bytes.py [--lives 3] [--polls 1]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from harness.client.transport import run_client
from mock_site.testing import running_site

#: The device kinds measured, by their traits (the ones this checkout knows).
KINDS = (("Entra-joined", ""), ("PKI certificate", "pki_client_cert"), ("bulk token", "bulk_token"))


def _request_bytes(request: httpx.Request) -> int:
    line = len(f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\n")
    headers = sum(len(name) + len(value) + 4 for name, value in request.headers.raw) + 2
    return line + headers + len(request.content)


def _response_bytes(response: httpx.Response) -> int:
    headers = sum(len(name) + len(value) + 4 for name, value in response.headers.raw) + 2
    return len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n") + headers + len(response.content)


def measure(manifest: Any, traits: str, lives: int, polls: int) -> tuple[float, float, float, bool]:
    """Mean requests, request bytes and response bytes per life, and whether every life succeeded."""
    counts: Counter[str] = Counter()
    original = httpx.Client.send

    def counting_send(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = original(client, request, **kwargs)
        response.read()
        counts["requests"] += 1
        counts["sent"] += _request_bytes(request)
        counts["received"] += _response_bytes(response)
        return response

    httpx.Client.send = counting_send  # type: ignore[method-assign]
    ok = True
    try:
        for seed in range(1, lives + 1):
            ok = run_client(manifest, traits, seed=seed, polls=polls).success and ok
    finally:
        httpx.Client.send = original  # type: ignore[method-assign]
    return counts["requests"] / lives, counts["sent"] / lives, counts["received"] / lives, ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lives", type=int, default=3)
    parser.add_argument("--polls", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state, running_site(Path(state), time_scale=60.0, logs_enabled=False) as site:
        print(f"{'device':<16} {'requests':>8} {'sent B':>9} {'received B':>11}  (mean per life, {args.polls} poll(s))")
        for kind, traits in KINDS:
            try:
                requests, sent, received, ok = measure(site.manifest, traits, args.lives, args.polls)
            except (ValueError, KeyError) as error:  # a trait this checkout does not know
                print(f"{kind:<16} not available here: {error}")
                continue
            print(f"{kind:<16} {requests:>8.1f} {sent:>9,.0f} {received:>11,.0f}" + ("" if ok else "  (a life failed)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
