"""Requests/s one Locust worker core sends: the full client protocol against a plain FastHttpUser baseline.

Both run in one invocation against the same mock site (its own process, pinned to core 0, CMG → CP → MP in-process so
the site is as fast as it gets); Locust runs pinned to core 1. On a machine with more cores, ``--site-cores`` and
``--site-processes`` give the site more of them (``cmg-harness up --processes``) so that it no longer sets the pace, and
``--worker-core`` names the core Locust runs on:

- ``trivial``  FastHttpUser fetching AADAuthInfo with no wait (benchmarks/locustfiles/trivial.py);
- ``protocol`` locustfiles/lifecycle.py: devices that install, register, renew CCM tokens and poll policy, with a time
  scale that makes every device due almost all the time, so the worker, not the schedule, sets the pace.

The figure is the median Requests/s of the last half of each run (Locust's per-second stats history), next to the
worker's CPU use over that same half. Whichever side (site or worker) is at 100 % CPU is the limit; the script says
which. On a shared or site-bound machine the comparable figure is requests per worker CPU second ("at equal CPU"),
printed over that window and over the worker's whole life (start-up, imports and every device's install included).

With ``--profile FILE`` the protocol run is also sampled by py-spy (``pip install py-spy``) and FILE gets the
functions that cost the most worker CPU, by own time and by time including what they call.

With ``--before DIR`` (a checkout of an earlier commit) the protocol side also runs from DIR's code against the same
site, alternating with this tree's for ``--rounds`` rounds: a before/after pair measured side by side, medians printed.

Usage: python benchmarks/locust_worker.py [--seconds 30] [--users 50] [--devices-per-user 20] [--profile FILE]
                                          [--before DIR] [--rounds 3] [--site-cores 0] [--site-processes 1]
                                          [--worker-core 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.client.stages import LIFECYCLE_REQUEST_TYPE

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_processes import start_site, stop_site  # noqa: E402  (a sibling benchmark: the same `cmg-harness up`)

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    """One Locust run's figures over the second half of its stats history."""

    #: Locust's median Requests/s (every entry, the protocol side's lifecycle stage rows among them).
    rate: float
    #: Worker CPU seconds per wall second over the whole process life, start-up and installs included.
    cpu_life: float
    #: Worker CPU seconds per wall second over the second half.
    cpu_window: float
    #: HTTP requests per second over the second half, counted from Locust's totals (stage rows left out).
    http_rate: float

    @property
    def http_per_cpu_second(self) -> float:
        """HTTP requests per worker CPU second over the second half: the figure "at equal CPU"."""
        return self.http_rate / max(self.cpu_window, 1e-9)


def run_locust(locustfile: Path, manifest_path: Path, out: Path, seconds: int, users: int,
               extra: list[str], profile: Path | None = None, tree: Path = ROOT, core: int = 1) -> Run:
    """The run's figures (:class:`Run`) over the second half of its Locust stats history.

    The second-half CPU is what the rate costs: the whole-life figure also holds Locust's start-up (imports) and, on
    the protocol side, every device's install and registration (RSA signatures) in the first seconds, which a short
    run makes weigh as much as its steady state. With ``profile``, py-spy runs Locust as its child and writes its
    samples (collapsed stacks) there; the CPU figures are then py-spy's, so a profiled run is not a benchmark figure."""
    env = {**os.environ, "CMG_HARNESS_SITE": str(manifest_path), "PYTHONPATH": str(tree)}
    spy = ["py-spy", "record", "--format", "raw", "--rate", "200", "--nolineno", "--output", str(profile), "--"]
    if profile is None:
        spy = []
    command = ["taskset", "-c", str(core), *spy, sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
               "-u", str(users), "-r", str(users), "-t", f"{seconds}s", "--csv", str(out), "--csv-full-history",
               "--only-summary", "--stop-timeout", "5", *extra]
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu_mid = _cpu_seconds(process.pid)
    samples: list[tuple[float, float]] = []  # (epoch seconds, CPU seconds so far): Locust's history is in epoch time
    for _ in range(int((seconds + 120) / 0.25)):  # bounded: the run, its stop timeout and start-up, with room
        if process.poll() is not None:
            break
        time.sleep(0.25)
        cpu_now = _cpu_seconds(process.pid)
        if cpu_now is not None:
            cpu_mid = cpu_now
            samples.append((time.time(), cpu_now))
    else:
        process.kill()
        raise SystemExit(f"locust ({locustfile.name}) did not end within {seconds + 120} s")
    wall = time.monotonic() - started
    history = []
    http_counts: dict[float, int] = {}  # HTTP requests so far (lifecycle stage rows left out) by history timestamp
    with open(f"{out}_stats_history.csv") as rows:
        for row in csv.DictReader(rows):
            stamp = float(row["Timestamp"])
            if row["Name"] == "Aggregated":
                if stamp > 0:
                    history.append((stamp, float(row["Requests/s"])))
            elif row["Type"] != LIFECYCLE_REQUEST_TYPE:
                http_counts[stamp] = http_counts.get(stamp, 0) + int(row["Total Request Count"])
    second_half = history[len(history) // 2:] or history
    start, end = second_half[0][0], second_half[-1][0]
    cpu_window = _cpu_share(samples, start, end)
    http = (http_counts.get(end, 0) - http_counts.get(start, 0)) / max(end - start, 1e-9)
    return Run(statistics.median(rate for _, rate in second_half), (cpu_mid or 0.0) / wall, cpu_window, http)


def _cpu_share(samples: list[tuple[float, float]], start: float, end: float) -> float:
    """CPU seconds per wall second between ``start`` and ``end`` (epoch), from the samples nearest to them."""
    inside = [sample for sample in samples if start <= sample[0] <= end] or samples
    if len(inside) < 2:
        return 0.0
    (t0, c0), (t1, c1) = inside[0], inside[-1]
    return (c1 - c0) / max(t1 - t0, 1e-9)


def profile_summary(raw: Path, top: int = 40) -> str:
    """The functions of py-spy's collapsed stacks that cost the most samples: own time, and time with their callees."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [frame.split(" (", 1)[0] + " (" + frame.rsplit("/", 1)[-1] if " (" in frame else frame
                  for frame in stack.split(";")]
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    lines = [f"{total:,} samples"]
    for title, table in (("own time", own), ("with callees", inclusive)):
        lines.append(f"\n{title}:")
        for frame, count in sorted(table.items(), key=lambda item: -item[1])[:top]:
            lines.append(f"  {count / max(total, 1):6.1%}  {frame}")
    return "\n".join(lines) + "\n"


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parse_cores(parser: argparse.ArgumentParser, text: str) -> set[int]:
    """The cores of a taskset-style list ("0", "0,2", "0-5"), or a one-line error naming the bad value."""
    cores: set[int] = set()
    try:
        for part in text.split(","):
            first, _, last = part.partition("-")
            cores.update(range(int(first), int(last or first) + 1))
    except ValueError:
        parser.error(f"--site-cores must be a core list such as 0 or 0-5 or 0,2, got {text!r}")
    if not cores:
        parser.error(f"--site-cores names no core: {text!r}")
    return cores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--devices-per-user", type=int, default=20)
    parser.add_argument("--time-scale", type=float, default=3600.0,
                        help="site time scale for the protocol run (3600: policy every 1 s, CCM token 8 s)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="also run the protocol side once more under py-spy and write its costliest functions here")
    parser.add_argument("--before", type=Path, default=None,
                        help="a checkout of an earlier commit: its protocol side runs too, alternating with this one")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every side (medians are printed)")
    parser.add_argument("--site-cores", default="0", help="the cores the site runs on (taskset list, e.g. 0-5)")
    parser.add_argument("--site-processes", type=int, default=1, help="cmg-harness up --processes for the site")
    parser.add_argument("--worker-core", type=int, default=1, help="the one core Locust runs on")
    args = parser.parse_args()
    site_cores = parse_cores(parser, args.site_cores)
    allowed = os.sched_getaffinity(0)
    if not site_cores <= allowed or args.worker_core not in allowed:
        parser.error(f"--site-cores {args.site_cores} and --worker-core {args.worker_core} must be among this "
                     f"process's cores {sorted(allowed)}")
    if args.worker_core in site_cores:
        parser.error(f"--worker-core {args.worker_core} is one of --site-cores {args.site_cores}: they must not share")
    if not 1 <= args.site_processes <= len(site_cores):
        parser.error(f"--site-processes must be 1..{len(site_cores)} (one per site core), got {args.site_processes}")
    if args.profile is not None and shutil.which("py-spy") is None:
        parser.error("--profile needs py-spy on PATH (pip install py-spy)")
    if args.before is not None and not (args.before / "locustfiles" / "lifecycle.py").is_file():
        parser.error(f"--before {args.before} is not a checkout of this project (no locustfiles/lifecycle.py)")
    if not 1 <= args.rounds <= 20:
        parser.error(f"--rounds must be 1..20, got {args.rounds}")
    work = Path(tempfile.mkdtemp(prefix="bench-locust-"))
    site, manifest = start_site(work / "site", args.site_processes, args.site_cores, "--time-scale",
                                str(args.time_scale), "--inprocess-hops")
    sides = {"trivial": (ROOT, ROOT / "benchmarks" / "locustfiles" / "trivial.py", False),
             "protocol": (ROOT, ROOT / "locustfiles" / "lifecycle.py", True)}
    if args.before is not None:
        sides["before"] = (args.before.resolve(), args.before.resolve() / "locustfiles" / "lifecycle.py", True)
    results: dict[str, list[Run]] = {name: [] for name in sides}
    try:
        manifest_path = work / "site" / "site.json"
        protocol_extra = ["--site", str(manifest_path), "--devices-per-user", str(args.devices_per_user)]
        for round_number in range(args.rounds):
            for name, (tree, locustfile, protocol) in sides.items():
                results[name].append(run_locust(locustfile, manifest_path, work / f"{name}{round_number}",
                                                args.seconds, args.users, protocol_extra if protocol else [],
                                                tree=tree, core=args.worker_core))
        if args.profile is not None:
            raw = work / "profile.raw"
            run_locust(ROOT / "locustfiles" / "lifecycle.py", manifest_path, work / "profiled", args.seconds,
                       args.users, protocol_extra, profile=raw, core=args.worker_core)
            args.profile.write_text(profile_summary(raw))
    finally:
        stop_site(site)
        shutil.rmtree(work, ignore_errors=True)
    devices = args.users * args.devices_per_user
    labels = {"trivial": f"trivial  FastHttpUser, AADAuthInfo, {args.users} users",
              "protocol": f"protocol lifecycle, {devices:,} devices (time scale {args.time_scale:g})",
              "before": f"before   lifecycle from {args.before}"}
    rates: dict[str, float] = {}
    per_core: dict[str, float] = {}
    per_core_life: dict[str, float] = {}
    for name, runs in results.items():
        rates[name] = statistics.median(run.rate for run in runs)
        cpu = statistics.median(run.cpu_window for run in runs)
        http = statistics.median(run.http_rate for run in runs)
        # Per worker CPU second: what one fully busy worker core would send, when the site rather than the worker
        # limits (the median of the rounds' own ratios). The main figure counts HTTP requests and the CPU of the same
        # second half; "life" is the first form of this benchmark: Locust's Requests/s (stage rows included) over the
        # CPU of the whole process life.
        per_core[name] = statistics.median(run.http_per_cpu_second for run in runs)
        per_core_life[name] = statistics.median(run.rate / max(run.cpu_life, 1e-9) for run in runs)
        rounds = ", ".join(f"{run.http_per_cpu_second:,.0f}" for run in runs)
        print(f"{labels[name]:<62} {rates[name]:8,.0f} req/s ({http:,.0f} HTTP)   worker CPU {cpu:4.0%}   "
              f"HTTP req per CPU s, rounds: {rounds}")
    protocol_cpu = statistics.median(run.cpu_window for run in results["protocol"])
    print(f"protocol-faithful rate is {rates['protocol'] / rates['trivial']:.0%} of the trivial rate "
          f"({'worker-bound' if protocol_cpu > 0.9 else 'site- or schedule-bound: the worker had CPU to spare'})")
    for title, table in (("HTTP requests per worker CPU second, second half", per_core),
                         ("life: Locust req/s per CPU second of the whole life", per_core_life)):
        line = (f"{title}: trivial {table['trivial']:,.0f}, protocol {table['protocol']:,.0f} "
                f"= {table['protocol'] / table['trivial']:.0%}")
        if "before" in table:
            line += f"; before {table['before']:,.0f} = {table['before'] / table['trivial']:.0%}"
        print(line)


if __name__ == "__main__":
    main()
