"""``cmg-harness up | faults | dashboards``: start the mock site, switch its faults, scrape it with Prometheus."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.manifest import load_manifest
from harness.cli.options import Parser, add_command, int_range, positive_float
from harness.defaults import DEFAULT_SITE, DEFAULT_STATE_DIR
from mock_site.manifest import SiteManifest


def add_site_commands(commands: Any) -> None:
    """The ``up``, ``faults`` and ``dashboards`` subcommands."""
    up = add_command(commands, "up", help="start the mock site (CMG, connection point, MP + CCM_STS, Entra, CRL)")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="PKI, database, logs and site.json")
    up.add_argument("--time-scale", type=positive_float("time scale"), default=1.0,
                    help="site time runs this many times faster (CCM token 8 h / scale)")
    up.add_argument("--cmg-instances", type=int_range("cmg instances", 1, 16), default=1)
    up.add_argument("--connection-points", type=int_range("connection points", 1, 16), default=1)
    up.add_argument("--cmgservice-log-period", type=positive_float("CMGService.log period"), default=300.0,
                    help="seconds between CMGService.log traffic lines (300 as the real CMG)")
    up.add_argument("--inprocess-hops", action="store_true",
                    help="call CMG → CP → MP in-process instead of over HTTPS (the site's ceiling)")
    up.add_argument("--cp-hop", choices=("channel", "https"), default="channel",
                    help="how the mock CMG reaches the connection points: down the channels they open to each CMG "
                         "instance (channel, as ConfigMgr does) or by HTTPS to their listeners (https, as nginx does)")
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
    up.add_argument("--processes", default="auto", metavar="N",
                    help="worker processes serving the roles, sharing their listeners (default auto: one per core; "
                         "1: everything in this process)")
    up.add_argument("--seed-clients", type=int_range("seed clients", 0, 10_000_000), default=0,
                    help="register this many clients in the site database before serving (steady-state runs)")

    faults = add_command(commands, "faults", help="list, set, clear or reset faults on a running site")
    faults.add_argument("--site", type=Path, default=Path(DEFAULT_SITE), help="the site's manifest")
    faults.add_argument("--json", action="store_true", help="print the control API's JSON instead of tables")
    fault_actions = faults.add_subparsers(dest="action", required=True, parser_class=Parser)
    add_command(fault_actions, "list", help="active faults and injection counts")
    add_command(fault_actions, "catalogue",
                help="every fault: target, what it does, parameters, expected outcome (this checkout's when no site "
                     "is up)")
    set_fault = add_command(fault_actions, "set", help="switch a fault on")
    set_fault.add_argument("name")
    set_fault.add_argument("--role")
    set_fault.add_argument("--probability", type=float, default=1.0)
    set_fault.add_argument("--duration", type=float, help="seconds (every fault ends)")
    set_fault.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    clear = add_command(fault_actions, "clear", help="switch a fault off")
    clear.add_argument("name")
    add_command(fault_actions, "reset", help="switch every fault off")
    for action in fault_actions.choices.values():
        # --json after the action too (`faults list --json`); SUPPRESS keeps a --json given before it.
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="print the control API's JSON instead of tables")

    dashboards = add_command(
        commands, "dashboards", help="write the Prometheus config and rules for a running site; --serve starts Prometheus")
    dashboards.add_argument("--site", type=Path, default=Path(DEFAULT_SITE))
    dashboards.add_argument("--out", type=Path, help="where prometheus.yml and rules/ go (default: <state>/prometheus)")
    dashboards.add_argument("--locust", action="append", default=[], metavar="HOST:PORT",
                            help="also scrape a Locust client-metrics exporter (repeatable)")
    dashboards.add_argument("--serve", action="store_true",
                            help="start Debian's prometheus on 127.0.0.1 against them until Ctrl-C")


def cmd_up(args: argparse.Namespace) -> int:
    """Build the mock site (or the roles asked for), serve it until SIGINT or SIGTERM, then stop it."""
    from mock_site.config import ConfigError, SiteConfig
    from mock_site.joining import JoinError, join_links
    from mock_site.site import ROLES, Site
    from mock_site.state_dir import SiteStateError
    from mock_site.testing import cmg_app_type
    from mock_site.workers import ProcessCountError, process_count

    try:
        processes = process_count(args.processes)
    except ProcessCountError as error:
        raise CliError(str(error)) from None
    try:
        config = SiteConfig(state_dir=args.state_dir, time_scale=args.time_scale, cmg_instances=args.cmg_instances,
                            connection_points=args.connection_points,
                            cmgservice_log_period_seconds=args.cmgservice_log_period, inprocess_hops=args.inprocess_hops,
                            cmg_enabled=not args.no_cmg, host=args.host, cp_hop=args.cp_hop)
        links = {}
        for item in args.link:
            role, sep, url = item.partition("=")
            if not sep or not url.startswith(("http://", "https://")):
                raise CliError(f"--link must be ROLE=URL with an http(s) URL, got {item!r}")
            links[role] = url.rstrip("/")
        links = join_links(args.join, links, roles=args.role or ROLES, ca_file=config.pki_dir / "ca.pem")
        site = Site(config, logs_enabled=not args.no_logs, roles=args.role or ROLES, links=links,
                    cmg_app_type=cmg_app_type(unsafe_skip_token_checks=args.unsafe_skip_token_checks))
    except (ConfigError, SiteStateError, JoinError) as error:
        raise CliError(str(error)) from None
    try:
        site.build()
    except (ConfigError, SiteStateError, JoinError) as error:
        site.state_lock.release()  # the state dir is free again for the corrected command
        raise CliError(str(error)) from None
    if args.seed_clients:
        import random

        site.db.seed_clients(args.seed_clients, config.default_tenant.tenant_id, random.Random(0))
    if processes > 1:
        from mock_site.workers import WorkerPool

        pool = WorkerPool(site, processes)
        return pool.run(lambda manifest: print(_summary(manifest, site), flush=True))

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await site.start()
        manifest = site.manifest()
        print(_summary(manifest, site), flush=True)
        await stop.wait()
        print("cmg-harness: stopping the site", flush=True)
        await site.stop()

    asyncio.run(serve())
    return 0


def _summary(manifest: SiteManifest, site: Any) -> str:
    lines = [
        f"mock site up (time scale {manifest.time_scale}: CCM token {manifest.ccm_token_lifetime_s:.0f} s, "
        f"policy every {manifest.policy_interval_s:.0f} s), roles here: {', '.join(manifest.roles)}",
    ]
    if manifest.worker_pids:
        lines.append(f"  served by {manifest.processes} worker processes: "
                     f"{', '.join(str(pid) for pid in manifest.worker_pids)}")
    for name, listener in site.listeners.items():
        where = listener.url + (manifest.server_auth_prefix if name == "cmg" else "")
        lines.append(f"  {name:<16} {where}")
    if manifest.channel_ports:
        lines.append(f"  cp channels      the connection points dial CMG port(s) {', '.join(map(str, manifest.channel_ports))}")
    if not manifest.cmg_enabled and manifest.cp_urls:
        lines.append(f"  no mock CMG: point your CMG-style proxy at the connection point {manifest.cp_urls[0]}")
    for role, url in ((link.role, link.url) for link in manifest.links):
        lines.append(f"  {role:<16} {url} (linked)")
    lines += [
        f"  root CA          {manifest.ca_file}",
        f"  logs             {manifest.log_dir}",
        f"  manifest         {site.manifest_path}",
        "Ctrl-C stops it.",
    ]
    return "\n".join(lines)


def cmd_faults(args: argparse.Namespace) -> int:
    from harness.chaos.faultapi import FaultApiError, FaultClient
    from harness.cli.faulttables import catalogue_and_listing, catalogue_tables, cleared, listing, switched_on

    if args.action == "catalogue" and not args.site.exists():
        # The catalogue is code: without a site up, this checkout's (the one `up` would serve) is the answer.
        from mock_site.faults import catalogue_dict

        return _print_faults(args, catalogue_dict(), lambda data: catalogue_tables(
            data, f"this checkout's catalogue; no site manifest at {args.site}"))
    manifest = load_manifest(args.site)
    client = FaultClient(manifest.faults_url, manifest.faults_token)
    try:
        if args.action == "list":
            return _print_faults(args, client.list(), listing)
        if args.action == "catalogue":
            if getattr(args, "json", False):
                return _print_faults(args, client.catalogue(), lambda data: data)
            # For people, the site's catalogue and what of it is on now (the list carries both).
            return _print_faults(args, client.list(), lambda data: catalogue_and_listing(
                data, f"the site's catalogue, {manifest.faults_url}"))
        if args.action == "set":
            params = {}
            for item in args.param:
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise CliError(f"--param must be KEY=VALUE, got {item!r}")
                params[key] = _number_or_text(value)
            result = client.set(args.name, role=args.role, probability=args.probability, duration=args.duration,
                                params=params)
            return _print_faults(args, result, switched_on)
        if args.action == "clear":
            return _print_faults(args, client.clear(args.name), lambda data: cleared(data, "clear"))
        return _print_faults(args, client.reset(), lambda data: cleared(data, "reset"))
    except FaultApiError as error:
        raise CliError(str(error)) from None
    finally:
        client.close()


def _print_faults(args: argparse.Namespace, data: Any, render: Callable[[Any], Any]) -> int:
    """The control API's answer as JSON (``--json``, for scripts) or as tables (for people)."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        from harness.cli.faulttables import console

        console().print(render(data))
    return 0


def cmd_dashboards(args: argparse.Namespace) -> int:
    from harness import dashboards

    manifest = load_manifest(args.site)
    out = args.out or manifest.state_dir / "prometheus"
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


