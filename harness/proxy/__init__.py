"""A real proxy under test: nginx configurations that behave like a CMG, rendered from a site manifest, and running them."""

from __future__ import annotations

from harness.proxy.nginx import RenderedProxy, render, render_config
from harness.proxy.process import NginxError, NginxProcess, find_nginx
from harness.proxy.site import ProxyConfigError, ProxySite, parse_listen

__all__ = [
    "NginxError",
    "NginxProcess",
    "ProxyConfigError",
    "ProxySite",
    "RenderedProxy",
    "find_nginx",
    "parse_listen",
    "render",
    "render_config",
]
