"""``cmg-harness``: up | run | client | faults | report | gate | dashboards | proxy-config."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness import _commands


class CliError(Exception):
    """A one-line message for the user; the CLI prints it and exits with status 2."""


def _positive_float(name: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, got {text!r}")
        return value
    return parse


def _int_range(name: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low}..{high}, got {value}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise CliError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cmg-harness", description="Chaos and load-testing harness for CMG-style proxies.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    up = commands.add_parser("up", help="start the mock site (CMG, connection point, MP + CCM_STS, Entra, CRL)")
    up.add_argument("--state-dir", type=Path, default=Path("state"), help="PKI, database, logs and site.json")
    up.add_argument("--time-scale", type=_positive_float("time scale"), default=1.0,
                    help="site time runs this many times faster (CCM token 8 h / scale)")
    up.add_argument("--cmg-instances", type=_int_range("cmg instances", 1, 16), default=1)
    up.add_argument("--connection-points", type=_int_range("connection points", 1, 16), default=1)
    up.add_argument("--cmgservice-log-period", type=_positive_float("CMGService.log period"), default=300.0,
                    help="seconds between CMGService.log traffic lines (default 300, as the real CMG)")
    up.add_argument("--inprocess-hops", action="store_true",
                    help="call CMG → CP → MP in-process instead of over HTTPS (the site's ceiling)")
    up.add_argument("--no-logs", action="store_true", help="do not write site log files")
    up.add_argument("--no-cmg", action="store_true",
                    help="run without the mock CMG: put your own CMG-style proxy in front of the connection point")
    up.add_argument("--role", action="append", choices=("crl", "entra", "mp", "cp", "cmg"), default=None,
                    help="run only this role here (repeatable); the others are reached through --link ROLE=URL")
    up.add_argument("--link", action="append", default=[], metavar="ROLE=URL",
                    help="where a role run elsewhere listens (cp takes a comma-separated list; crl the CRL's URL)")
    up.add_argument("--join", action="append", default=[], type=Path, metavar="MANIFEST",
                    help="take the other roles' URLs from the manifest another `up --role` wrote (repeatable)")
    up.add_argument("--host", default="127.0.0.1", help="the address the roles listen on (default 127.0.0.1)")
    up.add_argument("--unsafe-skip-token-checks", action="store_true", help=argparse.SUPPRESS)
    up.add_argument("--seed-clients", type=_int_range("seed clients", 0, 10_000_000), default=0,
                    help="register this many clients in the site database before serving (steady-state runs)")

    faults = commands.add_parser("faults", help="list, set, clear or reset faults on a running site")
    faults.add_argument("--site", type=Path, default=Path("state/site.json"), help="the site's manifest")
    fault_actions = faults.add_subparsers(dest="action", required=True, parser_class=_Parser)
    fault_actions.add_parser("list", help="active faults and injection counts")
    fault_actions.add_parser("catalogue", help="every fault the site knows, with parameters")
    set_fault = fault_actions.add_parser("set", help="switch a fault on")
    set_fault.add_argument("name")
    set_fault.add_argument("--role")
    set_fault.add_argument("--probability", type=float, default=1.0)
    set_fault.add_argument("--duration", type=float, help="seconds (every fault ends)")
    set_fault.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    clear = fault_actions.add_parser("clear", help="switch a fault off")
    clear.add_argument("name")
    fault_actions.add_parser("reset", help="switch every fault off")

    client = commands.add_parser("client", help="run one simulated device's whole life against a running site")
    client.add_argument("--site", type=Path, default=Path("state/site.json"))
    client.add_argument("--profile", default="", help="traits, e.g. 'wpj_missing,pki_client_cert' or 'clock_skew=900'")
    client.add_argument("--seed", type=int, default=1)
    client.add_argument("--log-dir", type=Path, help="write the client's CMTrace logs here")
    client.add_argument("--polls", type=_int_range("polls", 0, 1000), default=1)
    client.add_argument("--json", action="store_true", help="print the outcome and steps as JSON")

    dashboards = commands.add_parser(
        "dashboards", help="write the Prometheus config and rules for a running site; --serve starts Prometheus")
    dashboards.add_argument("--site", type=Path, default=Path("state/site.json"))
    dashboards.add_argument("--out", type=Path, help="where prometheus.yml and rules/ go (default: <state>/prometheus)")
    dashboards.add_argument("--locust", action="append", default=[], metavar="HOST:PORT",
                            help="also scrape a Locust client-metrics exporter (repeatable)")
    dashboards.add_argument("--serve", action="store_true",
                            help="start Debian's prometheus on 127.0.0.1 against them until Ctrl-C")

    run = commands.add_parser("run", help="start the mock site and run a headless Locust load against it")
    _commands.add_run_arguments(run, _positive_float, _int_range)

    gate = commands.add_parser("gate", help="judge an earlier run's results against a gate file (exit 3: crossed)")
    _commands.add_gate_arguments(gate)

    from harness.proxy import command as proxy_command

    proxy_config = commands.add_parser("proxy-config", help="render an nginx CMG-style proxy for a site without the mock "
                                                          "CMG and print its command line")
    proxy_command.add_arguments(proxy_config)

    from harness.report import command as report_command

    report = commands.add_parser("report", help="write the capacity-planning report (HTML) of a step-load run")
    report_command.add_arguments(report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cmg-harness``; returns the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        if args.command == "up":
            return cmd_up(args)
        if args.command == "faults":
            return cmd_faults(args)
        if args.command == "proxy-config":
            from harness.proxy.command import cmd_proxy_config

            return cmd_proxy_config(args)
        if args.command == "dashboards":
            return cmd_dashboards(args)
        if args.command == "report":
            from harness.report.command import cmd_report

            return cmd_report(args)
        return getattr(_commands, f"cmd_{args.command}")(args)
    except CliError as error:
        print(f"cmg-harness: {error}", file=sys.stderr)
        return 2
    except _commands.CommandError as error:
        print(f"cmg-harness: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def cmd_up(args: argparse.Namespace) -> int:
    from mock_site.config import ConfigError, SiteConfig
    from mock_site.joining import JoinError, join_links
    from mock_site.site import ROLES, Site, SiteStateError

    try:
        config = SiteConfig(state_dir=args.state_dir, time_scale=args.time_scale, cmg_instances=args.cmg_instances,
                            connection_points=args.connection_points,
                            cmgservice_log_period=args.cmgservice_log_period, inprocess_hops=args.inprocess_hops,
                            cmg_enabled=not args.no_cmg, unsafe_skip_token_checks=args.unsafe_skip_token_checks,
                            host=args.host)
        links = {}
        for item in args.link:
            role, sep, url = item.partition("=")
            if not sep or not url.startswith(("http://", "https://")):
                raise CliError(f"--link must be ROLE=URL with an http(s) URL, got {item!r}")
            links[role] = url.rstrip("/")
        links = join_links(args.join, links, roles=args.role or ROLES, ca_file=config.pki_dir / "ca.pem")
        site = Site(config, logs_enabled=not args.no_logs, roles=args.role or ROLES, links=links)
        site.build()
    except (ConfigError, SiteStateError, JoinError) as error:
        raise CliError(str(error)) from None
    if args.seed_clients:
        import random

        site.db.seed_clients(args.seed_clients, config.default_tenant.tenant_id, random.Random(0))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await site.start()
        manifest = site.manifest().to_dict()
        print(_summary(manifest, site), flush=True)
        await stop.wait()
        print("cmg-harness: stopping the site", flush=True)
        await site.stop()

    asyncio.run(serve())
    return 0


def _summary(manifest: dict[str, Any], site: Any) -> str:
    lines = [
        f"mock site up (time scale {manifest['time_scale']}: CCM token {manifest['ccm_token_lifetime_s']:.0f} s, "
        f"policy every {manifest['policy_interval_s']:.0f} s), roles here: {', '.join(manifest['roles'])}",
    ]
    for name, listener in site.listeners.items():
        where = listener.url + (manifest["server_auth_prefix"] if name == "cmg" else "")
        lines.append(f"  {name:<16} {where}")
    if not manifest["cmg_enabled"] and manifest["cp_urls"]:
        lines.append(f"  no mock CMG: point your CMG-style proxy at the connection point {manifest['cp_urls'][0]}")
    for role, url in manifest["links"].items():
        lines.append(f"  {role:<16} {url} (linked)")
    lines += [
        f"  root CA          {manifest['ca_file']}",
        f"  logs             {manifest['log_dir']}",
        f"  manifest         {site.manifest_path}",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


def cmd_faults(args: argparse.Namespace) -> int:
    from harness.chaos.faultapi import FaultApiError, FaultClient

    manifest = _commands.load_manifest(args.site)
    client = FaultClient(manifest["faults_url"], manifest["faults_token"])
    try:
        if args.action == "list":
            result: Any = client.list()
        elif args.action == "catalogue":
            result = client.catalogue()
        elif args.action == "set":
            params = {}
            for item in args.param:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise CliError(f"--param must be KEY=VALUE, got {item!r}")
                params[key] = _number_or_text(value)
            result = client.set(args.name, role=args.role, probability=args.probability, duration=args.duration,
                                params=params)
        elif args.action == "clear":
            result = client.clear(args.name)
        else:
            result = client.reset()
    except FaultApiError as error:
        raise CliError(str(error)) from None
    print(json.dumps(result, indent=2))
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from harness import dashboards

    manifest = _commands.load_manifest(args.site)
    out = args.out or Path(manifest["state_dir"]) / "prometheus"
    try:
        config = dashboards.write_prometheus_config(out, manifest, tuple(args.locust))
    except (OSError, ValueError) as error:
        raise CliError(f"cannot write the Prometheus config to {str(out)!r}: {error}") from None
    print(f"Prometheus config: {config}  (dashboards to import into Grafana: {dashboards.DASHBOARDS_DIR})")
    if not args.serve:
        return 0
    if dashboards.find_prometheus() is None:
        raise CliError("--serve needs the prometheus binary (apt-get install prometheus)")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with dashboards.start_prometheus(out) as prometheus:
        print(f"Prometheus on {prometheus.url} (pid {prometheus.pid}); Ctrl-C stops it.", flush=True)
        stop.wait()
    return 0


def _number_or_text(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


if __name__ == "__main__":
    sys.exit(main())
