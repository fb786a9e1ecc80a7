"""The real proxies the harness can configure (nginx, HAProxy): one ``render`` and one runner for either."""

from __future__ import annotations

from pathlib import Path

from harness.proxy import haproxy, nginx
from harness.proxy.haproxy import RenderedHaproxy
from harness.proxy.nginx import RenderedProxy
from harness.proxy.process import HaproxyProcess, NginxProcess, find_haproxy, find_nginx
from harness.proxy.site import ProxyConfigError
from mock_site.manifest import SiteManifest

NGINX = "nginx"
HAPROXY = "haproxy"
PROXIES = (NGINX, HAPROXY)


def render(manifest: SiteManifest, *, variant: str, out_dir: Path | str, listen: str = "127.0.0.1:0",
           worker_processes: int = 1, proxy: str = NGINX) -> RenderedProxy | RenderedHaproxy:
    """Render ``proxy``'s configuration for the site in ``manifest`` into ``out_dir`` (``worker_processes``: nginx
    workers, or HAProxy threads)."""
    if proxy == NGINX:
        return nginx.render(manifest, variant=variant, out_dir=out_dir, listen=listen,
                            worker_processes=worker_processes)
    if proxy == HAPROXY:
        return haproxy.render(manifest, variant=variant, out_dir=out_dir, listen=listen, threads=worker_processes)
    raise ProxyConfigError(f"proxy must be one of {', '.join(PROXIES)}, got {proxy!r}")


def find_binary(proxy: str) -> str | None:
    """The installed binary of ``proxy``, or None."""
    return find_haproxy() if proxy == HAPROXY else find_nginx()


def process_for(rendered: RenderedProxy | RenderedHaproxy, *, binary: str | None = None) -> NginxProcess:
    """The runner for a rendered configuration (``start()``, ``stop()``, a context manager)."""
    if isinstance(rendered, RenderedHaproxy):
        return HaproxyProcess(rendered, binary=binary)
    return NginxProcess(rendered, binary=binary)
