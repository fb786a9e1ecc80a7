"""Does the open-model dispatcher hold its intended rate, and what does its scheduling cost?

One invocation, against the mock site's lightest endpoint (AADAuthInfo; site pinned to core 0, Locust to core 1):

- ``open``: benchmarks/locustfiles/open_trivial.py — the real OpenLifecycleUser dispatcher, in-flight limit and
  latency book, with a fleet of ``--rate`` x ``--interval`` devices each fetching AADAuthInfo once per ``--interval``
  real seconds: intended ``--rate`` requests/s. Reported: achieved rate and its ratio to the intended one, lateness
  p50/p99/max (how late the dispatcher sent), service p99, and Locust's CPU per request;
- ``trivial``: benchmarks/locustfiles/trivial.py — a plain closed FastHttpUser loop fetching the same endpoint as fast
  as it can: its CPU per request is the floor of a request through Locust.

The difference of the two CPU-per-request figures is the open model's own overhead per request (dispatch, intended
times, three HdrHistogram records). Goal: achieved within 1 % of intended, lateness p99 a few ms.

Usage: python benchmarks/open_model.py [--rate 1000] [--interval 2] [--seconds 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIME_SCALE = 1200.0


def start_site(state: Path) -> tuple[subprocess.Popen[bytes], Path]:
    from mock_site.manifest import MANIFEST_NAME, SiteManifest

    process = subprocess.Popen(["taskset", "-c", "0", sys.executable, "-m", "harness.cli", "up", "--state-dir",
                                str(state), "--time-scale", str(TIME_SCALE), "--inprocess-hops", "--no-logs"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        path = state / MANIFEST_NAME
        if path.exists() and SiteManifest.read(path).pid == process.pid:
            return process, path
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the site did not start within 60 s")


def locust(locustfile: Path, manifest: Path, seconds: int, users: int, extra: list[str]) -> dict[str, float]:
    """Run Locust pinned to core 1; what benchmarks/locustfiles/cpu_meter.py measured between test start and stop
    (CPU seconds, requests, GC pauses), so start-up and report writing are not charged to the requests."""
    meter = Path(tempfile.mkdtemp(prefix="cpu-meter-")) / "cpu.json"
    env = {**os.environ, "CMG_HARNESS_SITE": str(manifest), "PYTHONPATH": str(ROOT), "CMG_BENCH_CPU_FILE": str(meter)}
    command = ["taskset", "-c", "1", sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u",
               str(users), "-r", str(users), "-t", f"{seconds}s", "--only-summary", "--stop-timeout", "2", *extra]
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False,
                   timeout=seconds + 120)
    try:
        return json.loads(meter.read_text())
    finally:
        shutil.rmtree(meter.parent, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="intended requests per second")
    parser.add_argument("--interval", type=float, default=2.0, help="real seconds between a device's requests")
    parser.add_argument("--seconds", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="open-model-"))
    site, manifest = start_site(work / "state")
    try:
        fleet = round(args.rate * args.interval)
        device_interval = f"{args.interval * TIME_SCALE:g}s"
        results = work / "open"
        results.mkdir()
        cpu_open = locust(ROOT / "benchmarks" / "locustfiles" / "open_trivial.py", manifest, args.seconds, 1,
                          ["--fleet", str(fleet), "--poll-interval", device_interval, "--results-dir", str(results),
                           "--site", str(manifest)])
        outcomes = json.loads((results / "outcomes.json").read_text())
        rates, latency = outcomes["rates"], outcomes["latency"]["all_requests"]
        trivial = work / "trivial"
        cpu_trivial = locust(ROOT / "benchmarks" / "locustfiles" / "trivial.py", manifest, 10, 20,
                             ["--csv", str(trivial)])
        open_us = cpu_open["cpu_s"] / max(cpu_open["requests"], 1) * 1e6
        trivial_us = cpu_trivial["cpu_s"] / max(cpu_trivial["requests"], 1) * 1e6
        print(f"intended      {args.rate:,.0f} requests/s ({fleet} devices, one request each per {args.interval:g} s)")
        print(f"achieved      {rates['achieved_per_s']:,.1f} requests/s over the run "
              f"({rates['achieved_per_s'] / args.rate:.2%} of intended; sent/(sent+unsent) "
              f"{rates['achieved_rate_ratio']:.2%})")
        print(f"lateness      p50 {latency['lateness_ms']['p50']:.2f} ms  p99 {latency['lateness_ms']['p99']:.2f} ms  "
              f"max {latency['lateness_ms']['max']:.1f} ms  (late > 100 ms: {outcomes['latency']['late']})")
        print(f"service       p50 {latency['service_ms']['p50']:.2f} ms  p99 {latency['service_ms']['p99']:.2f} ms")
        print(f"GC pauses     open model: {cpu_open['gc_pauses']:.0f}, longest {cpu_open['gc_pause_max_ms']:.1f} ms, "
              f"{cpu_open['gc_pause_total_ms']:.0f} ms in all")
        print(f"Locust CPU    open model {open_us:.0f} µs/request; plain FastHttpUser loop {trivial_us:.0f} µs/request; "
              f"the open model's own overhead ≈ {open_us - trivial_us:.0f} µs/request")
    finally:
        site.terminate()
        site.wait(30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
