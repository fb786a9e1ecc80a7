"""The longer CLI commands (client, run), kept apart from argument parsing in ``harness.cli``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

REQUIRED_MANIFEST_KEYS = ("cmg_url", "ca_file", "crl_url", "entra_url", "tenant_id", "role_id", "site_code",
                          "policy_interval_s", "faults_url", "faults_token")


class CommandError(Exception):
    """A one-line message for the user (exit status 2)."""


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a site manifest (``site.json``), refusing a missing, unreadable or incomplete one with its path named."""
    try:
        manifest = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CommandError(f"site manifest {str(path)!r} not found (start a site with `cmg-harness up`)") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"site manifest {str(path)!r} is not readable JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise CommandError(f"site manifest {str(path)!r} is not a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
    if missing:
        raise CommandError(f"site manifest {str(path)!r} lacks {', '.join(missing)}")
    return manifest


def add_run_arguments(parser: argparse.ArgumentParser, _positive_float: Callable[[str], Callable[[str], float]],
                      _int_range: Callable[[str, int, int], Callable[[str], int]]) -> None:
    """The options of ``cmg-harness run`` (the number parsers come from ``harness.cli`` so messages read alike)."""
    from harness.load.headless import DEFAULT_LOCUSTFILE, DEFAULT_TIME_SCALE

    def duration(text: str) -> float:
        from harness.load.headless import parse_duration

        try:
            return parse_duration(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    def fleet_mix(text: str) -> str:
        from harness.client.device import FleetMix

        try:
            FleetMix.parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"fleet mix {text!r}: {error}") from None
        return text

    parser.add_argument("--users", type=_int_range("users", 1, 1_000_000), default=20,
                        help="Locust users (each plays --devices-per-user devices; default 20)")
    parser.add_argument("--spawn-rate", type=_positive_float("spawn rate"), default=10.0,
                        help="users started per second (default 10)")
    parser.add_argument("--duration", type=duration, default=60.0,
                        help="how long Locust runs: 90, 90s, 2m, 1h30m (default 60 s)")
    parser.add_argument("--time-scale", type=_positive_float("time scale"), default=DEFAULT_TIME_SCALE,
                        help=f"site time runs this many times faster (default {DEFAULT_TIME_SCALE:g}: CCM token 24 s, "
                             "policy every 3 s)")
    parser.add_argument("--workers", type=_int_range("workers", 0, 256), default=0,
                        help="Locust worker processes (master + W workers; default 0: one process)")
    parser.add_argument("--out", type=Path, help="results directory (default results/<timestamp>/)")
    parser.add_argument("--locustfile", type=Path, default=DEFAULT_LOCUSTFILE,
                        help="lifecycle.py (default), steady_state.py or capacity.py from locustfiles/, or your own")
    parser.add_argument("--fleet-mix", type=fleet_mix, default="",
                        help="device traits by share, e.g. 'wpj_missing=0.2,root_ca_missing=0.05' (default none)")
    parser.add_argument("--seed", type=int, default=1, help="fleet seed: the same seed plays the same devices")
    parser.add_argument("--devices-per-user", type=_int_range("devices per user", 1, 1_000_000), default=5,
                        help="simulated devices each Locust user plays (default 5)")
    parser.add_argument("--seed-clients", type=_int_range("seed clients", 0, 10_000_000),
                        help="pre-register this many clients in the site (default: enough for every device when "
                             "the locustfile is steady_state.py, else none)")


def cmd_run(args: argparse.Namespace) -> int:
    """Start the mock site, run Locust headless against it, print the summary; 1 when lifecycles failed unexpectedly."""
    from datetime import datetime

    from harness.load.headless import RunError, RunPlan, default_out_dir, execute, seeded_fleet_size

    locustfile = Path(args.locustfile)
    if not locustfile.is_file():
        raise CommandError(f"locustfile {str(locustfile)!r} not found")
    out = Path(args.out) if args.out is not None else default_out_dir(datetime.now())
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CommandError(f"results directory {str(out)!r} is not an empty directory (pick a new --out)")
    seed_clients = args.seed_clients
    if seed_clients is None:
        seed_clients = (seeded_fleet_size(args.users, args.workers, args.devices_per_user)
                        if locustfile.stem == "steady_state" else 0)
    plan = RunPlan(out=out, users=args.users, spawn_rate=args.spawn_rate, duration=args.duration,
                   time_scale=args.time_scale, workers=args.workers, locustfile=locustfile.resolve(),
                   fleet_mix=args.fleet_mix, seed=args.seed, devices_per_user=args.devices_per_user,
                   seed_clients=seed_clients)
    try:
        return execute(plan)
    except RunError as error:
        raise CommandError(str(error)) from None


def cmd_client(args: argparse.Namespace) -> int:
    """Run one simulated device's whole life against a running site and print its step table."""
    from harness.client import ProfileError, format_step_table, parse_traits
    from harness.client.transport import run_client

    manifest = load_manifest(args.site)
    try:
        traits = parse_traits(args.profile)
    except ProfileError as error:
        raise CommandError(str(error)) from None
    try:
        outcome = run_client(manifest, traits, seed=args.seed, polls=args.polls, log_dir=args.log_dir)
    except ValueError as error:  # a manifest value or a trust file the client cannot use
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps(outcome.to_dict(), indent=2))
    else:
        print(format_step_table(outcome))
    return 0 if outcome.success else 1
