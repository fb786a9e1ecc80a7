"""A real proxy under test: nginx or HAProxy configurations that behave like a CMG, rendered from a site manifest, and
running them."""

from __future__ import annotations

from harness.proxy.haproxy import RenderedHaproxy
from harness.proxy.nginx import RenderedProxy, render_config
from harness.proxy.process import (
    HaproxyError,
    HaproxyProcess,
    NginxError,
    NginxProcess,
    ProxyProcessError,
    find_haproxy,
    find_nginx,
)
from harness.proxy.proxies import PROXIES, find_binary, process_for, render
from harness.proxy.site import ProxyConfigError, ProxySite, parse_listen

__all__ = [
    "HaproxyError",
    "HaproxyProcess",
    "NginxError",
    "NginxProcess",
    "PROXIES",
    "ProxyConfigError",
    "ProxyProcessError",
    "ProxySite",
    "RenderedHaproxy",
    "RenderedProxy",
    "find_binary",
    "find_haproxy",
    "find_nginx",
    "parse_listen",
    "process_for",
    "render",
    "render_config",
]
