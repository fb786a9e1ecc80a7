"""``cmg-harness proxy-config``: render an nginx or HAProxy CMG-style proxy for a running site and print how to start it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.options import add_command, int_range
from harness.defaults import DEFAULT_SITE
from harness.proxy.nginx import VARIANTS
from harness.proxy.proxies import NGINX, PROXIES, find_binary, render
from harness.proxy.site import ProxyConfigError
from mock_site.manifest import ManifestError, SiteManifest


def add_proxy_command(commands: Any) -> None:
    """The ``proxy-config`` subcommand."""
    parser = add_command(commands, "proxy-config", help="render an nginx or HAProxy CMG-style proxy for a site "
                                                        "without the mock CMG and print its command line")
    parser.add_argument("--site", type=Path, default=Path(DEFAULT_SITE),
                        help="manifest of a site started with `cmg-harness up --no-cmg`")
    parser.add_argument("--proxy", choices=PROXIES, default=NGINX, help="which proxy to configure (default nginx)")
    parser.add_argument("--variant", choices=VARIANTS, default="validating",
                        help="naive: forward every token; validating: check tokens at the edge")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT on loopback; port 0 picks a free one")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the configuration, its logs and files (default state/nginx; "
                             "state/haproxy with --proxy haproxy)")
    parser.add_argument("--workers", type=int_range("workers", 1, 64), default=1,
                        help="nginx worker processes or HAProxy threads")


def cmd_proxy_config(args: argparse.Namespace) -> int:
    """Render the configuration; print the proxy's command line on stdout and the next steps on stderr."""
    try:
        manifest = SiteManifest.read(args.site)
    except ManifestError as error:
        raise CliError(str(error)) from None
    try:
        proxy = args.proxy
        rendered = render(manifest, variant=args.variant, out_dir=args.out or Path("state") / proxy,
                          listen=args.listen, worker_processes=args.workers, proxy=proxy)
    except ProxyConfigError as error:
        raise CliError(str(error)) from None
    print(rendered.command_line(find_binary(proxy) or proxy))
    print(f"rendered {rendered.config_file} ({rendered.variant}); the proxy will serve {rendered.url}\n"
          f"then: cmg-harness run --site {args.site} --target {rendered.url} --ca-file {manifest.ca_file}",
          file=sys.stderr)
    return 0
