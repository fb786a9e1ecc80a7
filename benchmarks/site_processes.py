"""Policy requests/s of `cmg-harness up --processes N` against `--processes 1`, the load generator on the same cores.

Each site is a real `cmg-harness up` (real HTTPS hops CMG → connection point → MP, logs off) pinned with the load
generator (``hey``, keep-alive TLS) to the same cores, so the site's workers and the load compete for them as they
would on a small machine. Process counts are measured in turns (1, 2, 1, 2, ...) so drift hits both alike; each figure
is the median of the rounds. Printed: requests/s per process count, the speed-up over one process, and the scaling
efficiency (speed-up / process count), and the median of the per-round ratios (each round's counts ran back to back).

It also prints the CPU each request cost the site (all its processes, from /proc) and ``hey`` (its own CPU time), and
from those the most a process count can give on these cores: the site and the load generator share them, so N
processes serve at most cores / (site + hey CPU per request) requests a second, and one process at most 1 / (site CPU
per request). A cheaper site lowers that ceiling on the speed-up, because the generator's share of the cores grows.

By default the site and the load share every core this process may run on, and the counts are 1, 2, 4, ... up to
that many cores (on a 2-core machine: 1 and 2), so a bigger machine reports the scaling per core count.

Usage: python benchmarks/site_processes.py [--counts 1,2] [--cores 0,1] [--seconds 5] [--rounds 3] [--connections 50]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_chain import cpu_seconds, policy_request  # noqa: E402  (a sibling benchmark: the same policy poll)

REPO = Path(__file__).resolve().parent.parent


def start_site(state_dir: Path, processes: int, cores: str, *options: str) -> tuple[subprocess.Popen[bytes], Any]:
    """``cmg-harness up --processes N --no-logs [options]`` pinned to ``cores``, once its site.json names it."""
    from mock_site.manifest import SiteManifest

    process = subprocess.Popen(["taskset", "-c", cores, sys.executable, "-m", "harness.cli", "up", "--state-dir",
                                str(state_dir), "--processes", str(processes), "--no-logs", *options],
                               cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = state_dir / "site.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists():
            manifest = SiteManifest.read(path)
            if manifest.pid == process.pid:
                return process, manifest
        if process.poll() is not None:
            raise SystemExit(f"cmg-harness up --processes {processes} exited early")
        time.sleep(0.1)
    process.kill()
    raise SystemExit("no site.json within 60 s")


def stop_site(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()


@dataclass(frozen=True)
class Load:
    """One measurement: requests/s, and CPU seconds per request of the site (all its processes) and of ``hey``."""

    rate: float
    site_cpu: float
    hey_cpu: float


def site_cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds of the site's processes ``pids`` (all their threads)."""
    return sum(cpu_seconds(pid) for pid in pids)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def load(url: str, seconds: float, connections: int, cores: str, body_file: str, headers: dict[str, str],
         site_pids: list[int]) -> Load:
    """Requests/s from ``hey`` on ``cores`` (every answer must be a 200), with the CPU per request of both sides."""
    command = ["taskset", "-c", cores, "hey", "-cpus", str(len(cores.split(","))), "-c", str(connections),
               "-z", f"{seconds:g}s", "-m", "CCM_POST", "-D", body_file]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    site_before, hey_before = site_cpu_seconds(site_pids), children_cpu()
    finished = subprocess.run(command + [url], capture_output=True, text=True, check=False)
    site_cpu, hey_cpu = site_cpu_seconds(site_pids) - site_before, children_cpu() - hey_before
    output = finished.stdout
    if finished.returncode != 0:
        raise SystemExit(f"hey failed on {url}: {output} {finished.stderr}")
    statuses = re.findall(r"\[(\d{3})\]\s+(\d+) responses", output)
    bad = {code: count for code, count in statuses if code != "200"}
    if bad or "Error distribution" in output:
        raise SystemExit(f"{url}: answers other than 200: {bad}\n{output}")
    answered = max(1, sum(int(count) for _, count in statuses))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Load(rate, site_cpu / answered, hey_cpu / answered)


def measure(processes: int, args: argparse.Namespace, workdir: Path) -> Load:
    process, manifest = start_site(workdir / f"state-{processes}", processes, args.cores)
    try:
        site_pids = [process.pid, *(manifest.worker_pids or ())]
        url, body_file, headers = policy_request(manifest, workdir)
        load(url, 2, args.connections, args.cores, body_file, headers, site_pids)  # warm-up: caches, pools
        return load(url, args.seconds, args.connections, args.cores, body_file, headers, site_pids)
    finally:
        stop_site(process)


def default_counts(cores: int) -> list[int]:
    """1, 2, 4, ... below ``cores``, then ``cores`` itself."""
    counts, count = [], 1
    while count < cores:
        counts.append(count)
        count *= 2
    return [*counts, cores]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cores = sorted(os.sched_getaffinity(0))
    parser.add_argument("--counts", default=",".join(str(n) for n in default_counts(len(cores))),
                        help="process counts to compare (the first is the baseline)")
    parser.add_argument("--cores", default=",".join(str(core) for core in cores),
                        help="the cores the site and the load generator share")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    if shutil.which("hey") is None or shutil.which("taskset") is None:
        raise SystemExit("needs hey and taskset (apt-get install hey util-linux)")
    counts = [int(item) for item in args.counts.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="bench-processes-"))
    loads: dict[int, list[Load]] = {count: [] for count in counts}
    try:
        for round_number in range(args.rounds):
            for count in counts:
                measured = measure(count, args, workdir)
                loads[count].append(measured)
                print(f"round {round_number + 1}: --processes {count}: {measured.rate:,.0f} policy req/s  (CPU per "
                      f"request: site {measured.site_cpu * 1e6:,.0f} us, hey {measured.hey_cpu * 1e6:,.0f} us)",
                      flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results = {count: [measured.rate for measured in values] for count, values in loads.items()}
    base = statistics.median(results[counts[0]])
    print(f"\npolicy chain over real HTTPS hops, site and hey sharing cores {args.cores} "
          f"({os.cpu_count()} cores on this machine), medians of {args.rounds}:")
    for count in counts:
        median = statistics.median(results[count])
        speedup = median / base
        # Each round measures every count back to back: the median of the per-round ratios discounts drift in the
        # machine's load between rounds, which the ratio of the medians does not.
        paired = statistics.median(rate / first for rate, first in zip(results[count], results[counts[0]], strict=True))
        print(f"  --processes {count}: {median:8,.0f} req/s  {speedup:.2f}x of --processes {counts[0]}  "
              f"scaling efficiency {speedup / (count / counts[0]):.0%}  (per-round ratios' median {paired:.2f}x)")
    # The ceiling: N processes on these cores serve at most min(N, cores) / site CPU per request on their own, and
    # with hey on the same cores at most cores / (site + hey CPU per request).
    shared = len(args.cores.split(","))
    site_cpu = statistics.median(measured.site_cpu for measured in loads[counts[0]])
    hey_cpu = statistics.median(measured.hey_cpu for values in loads.values() for measured in values)

    def ceiling(count: int) -> float:
        return min(min(count, shared) / site_cpu, shared / (site_cpu + hey_cpu))

    print(f"CPU per request (medians): site {site_cpu * 1e6:,.0f} us with --processes {counts[0]}, hey "
          f"{hey_cpu * 1e6:,.0f} us; the most each count can give on {shared} shared cores: " + ", ".join(
              f"--processes {count} {ceiling(count) / ceiling(counts[0]):.2f}x" for count in counts))
    if len(counts) > 1:
        best = statistics.median(results[counts[-1]]) / base
        print(f"target: --processes {counts[-1]} at >= 1.3x of --processes {counts[0]}: "
              f"{'met' if best >= 1.3 else 'not met'} ({best:.2f}x)")


if __name__ == "__main__":
    main()
