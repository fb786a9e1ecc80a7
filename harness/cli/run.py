"""``cmg-harness run`` (the mock site and a headless Locust run) and ``cmg-harness client`` (one device's life)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.gate import gate_file
from harness.cli.manifest import load_manifest
from harness.cli.options import (
    add_command,
    duration_seconds,
    duration_text,
    int_range,
    positive_float,
    ramp_text,
    rate_text,
)
from harness.defaults import (
    CAPACITY_SEARCH_LOCUSTFILE,
    DEFAULT_DEVICES_PER_USER,
    DEFAULT_DURATION_SECONDS,
    DEFAULT_LOCUSTFILE,
    DEFAULT_SEED,
    DEFAULT_SITE,
    DEFAULT_SPAWN_RATE,
    DEFAULT_TIME_SCALE,
    DEFAULT_USERS,
    OPEN_LOCUSTFILE,
)
from harness.load.open_model import DEFAULT_SEARCH_HOLD_SECONDS
from harness.load.progress import DEFAULT_PLAIN_INTERVAL
from harness.plans.arrivals import DEFAULT_MAX_IN_FLIGHT
from harness.plans.search import SearchSettings
from mock_site.manifest import SiteManifest


def add_run_commands(commands: Any) -> None:
    """The ``run`` and ``client`` subcommands."""
    from harness.plans.users import StepPlan

    run = add_command(commands, "run", help="start the mock site and run a headless Locust load against it")
    run.add_argument("--users", type=int_range("users", 1, 1_000_000), default=DEFAULT_USERS,
                     help="Locust users, each playing --devices-per-user devices (closed model; the open model runs "
                          "one dispatcher per process)")
    run.add_argument("--spawn-rate", type=positive_float("spawn rate"), default=DEFAULT_SPAWN_RATE,
                     help="users started per second")
    run.add_argument("--duration", type=duration_seconds, default=DEFAULT_DURATION_SECONDS,
                     help="how long Locust runs: 90, 90s, 2m, 1h30m (seconds)")
    run.add_argument("--time-scale", type=positive_float("time scale"), default=DEFAULT_TIME_SCALE,
                     help=f"site time runs this many times faster ({DEFAULT_TIME_SCALE:g}: CCM token "
                          f"{8 * 3600 / DEFAULT_TIME_SCALE:g} s, policy every {3600 / DEFAULT_TIME_SCALE:g} s)")
    run.add_argument("--workers", type=int_range("workers", 0, 256), default=0,
                     help="Locust worker processes (master + W workers; 0: one process)")
    run.add_argument("--master-port", type=int_range("master port", 1, 65535), metavar="PORT",
                     help="with --workers: the port on 127.0.0.1 where Locust's master listens for its workers "
                          "(default 5557, Locust's); checked free before anything starts")
    run.add_argument("--out", type=Path, help="results directory (default: results/<timestamp>/)")
    run.add_argument("--locustfile", type=Path,
                     help=f"lifecycle.py, steady_state.py, capacity.py or open.py from locustfiles/, or your own "
                          f"(default: {DEFAULT_LOCUSTFILE.name}; open model: {OPEN_LOCUSTFILE.name})")
    run.add_argument("--fleet-mix", type=fleet_mix, default="",
                     help="device traits by share, e.g. 'wpj_missing=0.2,root_ca_missing=0.05' (default: none)")
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="fleet seed: the same seed plays the same devices")
    run.add_argument("--devices-per-user", type=int_range("devices per user", 1, 1_000_000),
                     default=DEFAULT_DEVICES_PER_USER, help="simulated devices each Locust user plays")
    run.add_argument("--seed-clients", type=int_range("seed clients", 0, 10_000_000),
                     help="pre-register this many clients in the site (default: enough for every device when "
                          "the locustfile is steady_state.py, else none)")
    run.add_argument("--chaos", type=chaos_file, metavar="FILE",
                     help="a chaos schedule (YAML, e.g. scenarios/crl-outage.yaml): its faults are switched on "
                          "and off during the run, its device shares join the fleet mix; checked before the run")
    run.add_argument("--site", type=Path, metavar="MANIFEST",
                     help="use the site already up with this manifest (site.json) instead of starting one")
    run.add_argument("--target", type=target_url, metavar="URL",
                     help="send the clients to this CMG-style proxy (https://host:port) instead of the site's CMG")
    run.add_argument("--ca-file", type=Path, metavar="PEM",
                     help="trust this CA for the --target's server certificate instead of the site CA")
    arrivals = run.add_argument_group(
        "open model (devices act on their own schedules whatever the latency of others; docs/load.md)")
    arrivals.add_argument("--arrival-rate", type=rate_text, metavar="RATE",
                          help="new devices starting their life per second: 20, 20/s, 1200/m")
    arrivals.add_argument("--ramp", type=ramp_text, metavar="STAGES",
                          help="ramping arrival rate from 0: stages RATE:DURATION, e.g. 10/s:1m,50/s:2m")
    arrivals.add_argument("--fleet", type=int_range("fleet", 1, 10_000_000), metavar="N",
                          help="a steady fleet of N devices, each polling policy every --poll-interval")
    arrivals.add_argument("--poll-interval", type=duration_text, metavar="DURATION",
                          help="device time between policy polls, e.g. 60m (scaled by --time-scale; default: the "
                               "site's 60 minutes)")
    arrivals.add_argument("--max-in-flight", type=int_range("max in flight", 1, 100_000),
                          default=DEFAULT_MAX_IN_FLIGHT,
                          help="outstanding requests per Locust process before new ones wait (and count as late)")
    search = SearchSettings()
    arrivals.add_argument("--capacity", action="store_true",
                          help="capacity search: raise the arrival rate step by step until the system saturates, "
                               "then bisect; the answer in capacity.json and the summary")
    arrivals.add_argument("--slo-p99-ms", type=positive_float("SLO p99"), default=search.slo_corrected_p99_ms,
                          help="capacity search: a step fails when its corrected p99 passes this")
    arrivals.add_argument("--search-start-rate", type=rate_text, default=f"{search.start_rate_per_s:g}/s",
                          help="capacity search: the first step's arrival rate")
    arrivals.add_argument("--search-max-rate", type=rate_text, default=f"{search.max_rate_per_s:g}/s",
                          help="capacity search: the highest rate it may ask for")
    arrivals.add_argument("--search-hold", type=duration_seconds, default=DEFAULT_SEARCH_HOLD_SECONDS,
                          help="capacity search: how long each step is held (a third settles, the rest counts)")
    arrivals.add_argument("--search-repeats", type=int_range("search repeats", 1, 10), default=search.repeats,
                          help="capacity search: times each rate is measured (the median decides)")
    arrivals.add_argument("--search-max-steps", type=int_range("search max steps", 1, 100),
                          default=search.max_steps, help="capacity search: at most this many steps")
    arrivals.add_argument("--polls-per-device", type=int_range("polls per device", 0, 1_000_000), default=0,
                          help="policy cycles each device runs before its life ends (0: until the run ends)")
    plan = StepPlan()
    steps = run.add_argument_group("step load (with --locustfile locustfiles/capacity.py; the run lasts steps x hold)")
    steps.add_argument("--steps", type=int_range("steps", 1, 1000), help=f"number of steps (default: {plan.steps})")
    steps.add_argument("--step-users", type=int_range("step users", 1, 1_000_000),
                       help=f"users added per step (default: {plan.step_users})")
    steps.add_argument("--step-hold", type=duration_seconds,
                       help=f"how long each step is held (default: {plan.hold:g} s)")
    steps.add_argument("--step-start-users", type=int_range("step start users", 0, 1_000_000),
                       help=f"users before the first step (default: {plan.start_users})")
    run.add_argument("--inprocess-hops", action="store_true",
                     help="start the site with CMG -> CP -> MP as in-process calls (about 4x its HTTPS-hop rate; "
                          "for large fleets)")
    run.add_argument("--gate", type=gate_file, metavar="FILE",
                     help="a gate file of thresholds (YAML): checked before the run, watched during it, judged "
                          "after it; exit 3 when a threshold is crossed")
    run.add_argument("--progress-interval", type=progress_interval, default=DEFAULT_PLAIN_INTERVAL, metavar="DURATION",
                     help="when the output is not a terminal (CI), print the run's status line this often (default "
                          f"{DEFAULT_PLAIN_INTERVAL:g} s; 0: no progress); a terminal shows it in place, refreshed")

    client = add_command(commands, "client", help="run one simulated device's whole life against a running site")
    client.add_argument("--site", type=Path, default=Path(DEFAULT_SITE), help="the site's manifest")
    client.add_argument("--profile", default="", help="traits, e.g. 'wpj_missing,pki_client_cert' or 'clock_skew=900'")
    client.add_argument("--seed", type=int, default=DEFAULT_SEED, help="device seed")
    client.add_argument("--log-dir", type=Path, help="write the client's CMTrace logs here")
    client.add_argument("--polls", type=int_range("polls", 0, 1000), default=1, help="policy cycles to run")
    client.add_argument("--json", action="store_true", help="print the outcome and steps as JSON")


def progress_interval(text: str) -> float:
    """argparse type: a duration between two plain progress lines, or 0 for none."""
    return 0.0 if text.strip() in ("0", "0s") else duration_seconds(text)


def fleet_mix(text: str) -> str:
    """argparse type: a fleet mix (``wpj_missing=0.2,...``), checked and kept as written."""
    from harness.client.device import FleetMix

    try:
        FleetMix.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"fleet mix {text!r}: {error}") from None
    return text


def chaos_file(text: str) -> tuple[Path, Any]:
    """argparse type: the chaos schedule at ``text``, read and checked before anything runs (errors name file:line)."""
    from harness.chaos.schedule import ScheduleError, load_schedule

    try:
        return Path(text), load_schedule(Path(text))
    except ScheduleError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def target_url(text: str) -> str:
    """argparse type: the https URL of a CMG-style proxy (scheme, host and optional port; no path)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"target must be https://host[:port], got {text!r}") from None
    if parts.scheme != "https" or not parts.hostname or parts.path.strip("/") or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"target must be https://host[:port], got {text!r}")
    return text.rstrip("/")


def _site_for_run(args: argparse.Namespace) -> SiteManifest | None:
    """The manifest of the site named by ``--site`` (None: the run starts its own), checked with the other options."""
    if args.site is None:
        if args.target is None and args.ca_file is not None:
            raise CliError("--ca-file is for the certificate of a --target proxy; give --target too")
        return None
    manifest = load_manifest(args.site)
    if args.seed_clients:
        raise CliError("--seed-clients needs the run to start the site; seed a site of your own with "
                           "`cmg-harness up --seed-clients N`")
    if not manifest.cmg_url and args.target is None:
        raise CliError(f"site {str(args.site)!r} runs without a CMG (--no-cmg): give --target with the URL "
                           f"of your CMG-style proxy")
    return manifest


def _fleet_mix_text(mix: Any) -> str:
    """A fleet mix in the ``--fleet-mix`` form (shares that are not 0, and the skew when a share is skewed)."""
    from harness.client.device import DEFAULT_SKEW_SECONDS, SHARE_TRAITS

    items = [f"{name}={getattr(mix, name):g}" for name in SHARE_TRAITS if getattr(mix, name)]
    if mix.clock_skew and mix.skew_seconds != DEFAULT_SKEW_SECONDS:
        items.append(f"skew_seconds={mix.skew_seconds:g}")
    return ",".join(items)


def cmd_run(args: argparse.Namespace) -> int:
    """Start the mock site (or use ``--site``), run Locust headless against it, print the summary; 1 on anything
    unexpected."""
    from datetime import datetime

    from harness.load.headless import (
        DEFAULT_MASTER_PORT,
        RunError,
        check_port_free,
        execute,
        master_port_args,
        seeded_fleet_size,
    )
    from harness.results.layout import ResultsDir, default_results_path
    from harness.results.plan import RunPlan

    open_options = open_model_args(args)
    default_locustfile = CAPACITY_SEARCH_LOCUSTFILE if args.capacity else OPEN_LOCUSTFILE if open_options \
        else DEFAULT_LOCUSTFILE
    locustfile = Path(args.locustfile or default_locustfile)
    users = max(1, args.workers) if open_options else args.users
    if not locustfile.is_file():
        raise CliError(f"locustfile {str(locustfile)!r} not found")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise CliError(f"CA file {str(args.ca_file)!r} not found")
    if args.inprocess_hops and args.site is not None:
        raise CliError("--inprocess-hops starts the embedded site that way; a site given with --site runs as it is")
    manifest = _site_for_run(args)
    fleet_mix = args.fleet_mix
    chaos = None
    if args.chaos is not None:
        from harness.client.device import FleetMix

        chaos, schedule = args.chaos
        chaos = chaos.resolve()
        try:
            # The schedule's device shares join (and win over) --fleet-mix; Locust lays them over it the same way.
            fleet_mix = _fleet_mix_text(schedule.fleet_mix(FleetMix.parse(fleet_mix)))
        except ValueError as error:
            raise CliError(f"--chaos {str(args.chaos[0])!r} with --fleet-mix {args.fleet_mix!r}: {error}") \
                from None
        late = [fault for fault in schedule.timed if fault.start >= args.duration]
        if late:
            print(f"cmg-harness: note: {len(late)} fault(s) of {args.chaos[0]} start after the run's "
                  f"{args.duration:g} s and will not be switched on (line {late[0].line}: {late[0].name})",
                  file=sys.stderr)
    out = Path(args.out) if args.out is not None else default_results_path(datetime.now())
    if not ResultsDir(out).is_unused():
        raise CliError(f"results directory {str(out)!r} is not an empty directory (pick a new --out)")
    master_args: tuple[str, ...] = ()
    if args.workers:
        master_port = args.master_port or DEFAULT_MASTER_PORT
        try:
            # Taken, Locust's master would die at start-up and leave its workers waiting for it.
            check_port_free(master_port)
        except RunError as error:
            raise CliError(str(error)) from None
        master_args = master_port_args(master_port)
    elif args.master_port is not None:
        raise CliError("--master-port is for the master of --workers processes; give --workers too")
    seed_clients = args.seed_clients
    if seed_clients is None:
        seed_clients = (seeded_fleet_size(users, args.workers, args.devices_per_user)
                        if locustfile.stem == "steady_state" and manifest is None else 0)
    # A site that is already up has its own time scale: the run follows it.
    time_scale = manifest.time_scale if manifest is not None else args.time_scale
    step_args, duration = _step_options(args, locustfile)
    if args.capacity:
        # The search stops the run when it has its answer; this is only the bound: every step held, plus a margin.
        duration = args.search_max_steps * args.search_repeats * args.search_hold + 15.0
    plan = RunPlan(out=out, users=users, spawn_rate=args.spawn_rate, duration=duration,
                   time_scale=time_scale, workers=args.workers, locustfile=locustfile.resolve(),
                   fleet_mix=fleet_mix, seed=args.seed, devices_per_user=args.devices_per_user,
                   seed_clients=seed_clients, chaos=chaos,
                   site=args.site.resolve() if args.site is not None else None, target=args.target,
                   ca_file=args.ca_file.resolve() if args.ca_file is not None else None,
                   inprocess_hops=args.inprocess_hops,
                   model="open" if open_options else "closed",
                   extra_locust_args=step_args + open_options + master_args
                   + (("--gate", str(Path(args.gate.path).resolve())) if args.gate else ()))
    try:
        # The gate is judged inside the run, so the screen ends with it, the verdict and the result files.
        return execute(plan, gate=args.gate, progress_interval=args.progress_interval)
    except RunError as error:
        raise CliError(str(error)) from None


def open_model_args(args: argparse.Namespace) -> tuple[str, ...]:
    """The open-model options as Locust arguments (empty for a closed run); refuses two kinds of arrivals at once."""
    chosen = [flag for flag, value in (("--arrival-rate", args.arrival_rate), ("--ramp", args.ramp),
                                       ("--fleet", args.fleet), ("--capacity", args.capacity)) if value]
    if len(chosen) > 1:
        raise CliError(f"choose one of {', '.join(chosen)}: each sets the open model's arrivals")
    common: tuple[str, ...] = ()
    if args.poll_interval:
        common += ("--poll-interval", args.poll_interval)
    if args.polls_per_device:
        common += ("--polls-per-device", str(args.polls_per_device))
    if not chosen:
        return common
    if args.capacity:
        polls = () if args.polls_per_device else ("--polls-per-device", "1")  # each arrival brings bounded work
        return ("--capacity-search", "--slo-p99-ms", repr(args.slo_p99_ms), "--search-start-rate",
                args.search_start_rate, "--search-max-rate", args.search_max_rate, "--search-hold",
                repr(args.search_hold), "--search-repeats", str(args.search_repeats), "--search-max-steps",
                str(args.search_max_steps), "--max-in-flight", str(args.max_in_flight)) + common + polls
    value = {"--arrival-rate": args.arrival_rate, "--ramp": args.ramp, "--fleet": str(args.fleet)}[chosen[0]]
    return (chosen[0], value, "--max-in-flight", str(args.max_in_flight)) + common


def _step_options(args: argparse.Namespace, locustfile: Path) -> tuple[tuple[str, ...], float]:
    """The step shape's Locust options, and the run's length: a step run lasts its steps, whatever --duration says."""
    from harness.plans.users import PlanError, StepPlan

    given = {"--steps": args.steps, "--step-users": args.step_users, "--step-hold": args.step_hold,
             "--step-start-users": args.step_start_users}
    options = tuple(item for name, value in given.items() if value is not None for item in (name, f"{value:g}"))
    if locustfile.stem != "capacity":
        if options:
            raise CliError(f"{options[0]} only applies to a step run (--locustfile locustfiles/capacity.py)")
        return (), args.duration
    defaults = StepPlan()
    try:
        plan = StepPlan(step_users=args.step_users or defaults.step_users, steps=args.steps or defaults.steps,
                        hold=args.step_hold or defaults.hold,
                        start_users=args.step_start_users or defaults.start_users)
    except PlanError as error:
        raise CliError(str(error)) from None
    return options, plan.duration


def cmd_client(args: argparse.Namespace) -> int:
    """Run one simulated device's whole life against a running site and print its step table."""
    from harness.client import ProfileError, format_step_table, parse_traits
    from harness.client.transport import run_client

    manifest = load_manifest(args.site)
    try:
        traits = parse_traits(args.profile)
    except ProfileError as error:
        raise CliError(str(error)) from None
    try:
        outcome = run_client(manifest, traits, seed=args.seed, polls=args.polls, log_dir=args.log_dir)
    except ValueError as error:  # a manifest value or a trust file the client cannot use
        raise CliError(str(error)) from None
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        print(format_step_table(outcome))
    return 0 if outcome.success else 1
