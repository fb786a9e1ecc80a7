"""``cmg-harness proxy-config``: render an nginx CMG-style proxy for a running site and print how to start it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.errors import CliError
from harness.cli.options import add_command, int_range
from harness.defaults import DEFAULT_SITE
from mock_site.manifest import ManifestError, SiteManifest


def add_proxy_command(commands: Any) -> None:
    """The ``proxy-config`` subcommand."""
    from harness.proxy.nginx import VARIANTS

    parser = add_command(commands, "proxy-config", help="render an nginx CMG-style proxy for a site without the mock "
                                                        "CMG and print its command line")
    parser.add_argument("--site", type=Path, default=Path(DEFAULT_SITE),
                        help="manifest of a site started with `cmg-harness up --no-cmg`")
    parser.add_argument("--variant", choices=VARIANTS, default="validating",
                        help="naive: forward every token; validating: check tokens at the edge")
    parser.add_argument("--listen", default="127.0.0.1:0", help="HOST:PORT on loopback; port 0 picks a free one")
    parser.add_argument("--out", type=Path, default=Path("state/nginx"),
                        help="directory for nginx.conf, its logs, pid file and temp files")
    parser.add_argument("--workers", type=int_range("workers", 1, 64), default=1, help="nginx worker processes")


def cmd_proxy_config(args: argparse.Namespace) -> int:
    """Render the configuration; print the nginx command line on stdout and the next steps on stderr."""
    from harness.proxy.nginx import render
    from harness.proxy.process import find_nginx
    from harness.proxy.site import ProxyConfigError

    try:
        manifest = SiteManifest.read(args.site)
    except ManifestError as error:
        raise CliError(str(error)) from None
    try:
        rendered = render(manifest, variant=args.variant, out_dir=args.out, listen=args.listen,
                          worker_processes=args.workers)
    except ProxyConfigError as error:
        raise CliError(str(error)) from None
    print(rendered.command_line(find_nginx() or "nginx"))
    print(f"rendered {rendered.config_file} ({rendered.variant}); the proxy will serve {rendered.url}\n"
          f"then: cmg-harness run --site {args.site} --target {rendered.url} --ca-file {manifest.ca_file}",
          file=sys.stderr)
    return 0
