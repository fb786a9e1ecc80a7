"""The long fuzz run: seeded, structure-aware CCM messages through a real mock site (CMG → CP → MP over TLS).

The same rules as the suite's 2,000-message test: no answer is a 5xx and none takes over 1 s. Prints the figures
docs/security.md quotes (count, wall time, statuses, the slowest answer) and exits 1 when a rule is broken.

Usage: python benchmarks/fuzz_messages.py [--count 100000] [--seed 14] [--slow 1.0]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

from harness.message_fuzzer import FuzzTokens, MessageFuzzer, send_cases
from mock_site.testing import SiteClient, running_site


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages to send (default 100000)")
    parser.add_argument("--seed", type=int, default=14, help="the fuzzer's seed (default 14)")
    parser.add_argument("--slow", type=float, default=1.0, help="an answer slower than this many seconds fails")
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be >= 1, got {args.count}")
    if not args.slow > 0:
        parser.error(f"--slow must be > 0, got {args.slow}")
    with tempfile.TemporaryDirectory(prefix="cmg-fuzz-") as state, \
            running_site(Path(state), time_scale=1, logs_enabled=False) as site, SiteClient(site.manifest) as client:
        device = client.register_device()
        tokens = FuzzTokens(ccm=device.ccm_token, entra=device.entra_token, smsid=device.smsid)
        fuzzer = MessageFuzzer(random.Random(args.seed), site_code=site.manifest.site_code, tokens=tokens)
        started = time.perf_counter()
        report = send_cases(client.http, client.server_auth("ccm_system_tokenauth/request"),
                            fuzzer.cases(args.count), slow_seconds=args.slow)
        wall = time.perf_counter() - started
    assert report.statuses is not None and report.server_errors is not None and report.too_slow is not None
    print(f"command: python benchmarks/fuzz_messages.py --count {args.count} --seed {args.seed}")
    print(f"messages: {report.sent} in {wall:.1f} s ({report.sent / wall:.0f}/s)")
    print("statuses: " + ", ".join(f"{code}: {n}" for code, n in sorted(report.statuses.items())))
    print(f"max time: {report.max_seconds * 1000:.1f} ms ({report.slowest})")
    print(f"5xx: {len(report.server_errors)}; over {args.slow} s: {len(report.too_slow)}")
    for line in (report.server_errors + report.too_slow)[:20]:
        print(f"  {line}")
    return 1 if report.server_errors or report.too_slow else 0


if __name__ == "__main__":
    sys.exit(main())
