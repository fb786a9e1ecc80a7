"""What a CMG-style proxy needs to know about the mock site, read from its manifest (``site.json``) and checked."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mock_site.manifest import SiteManifest


class ProxyConfigError(ValueError):
    """The manifest or a setting cannot make a proxy configuration; the message names the bad value."""


@dataclass(frozen=True, slots=True)
class Tenant:
    """An onboarded tenant, as AADAuthInfo describes it."""

    tenant_id: str
    client_app_id: str
    resource_uri: str


@dataclass(frozen=True, slots=True)
class ProxySite:
    """What the proxy needs to know about the site: connection points, trust files, validator, tenants."""

    connection_points: tuple[tuple[str, int], ...]
    cp_server_name: str
    ca_file: Path
    cmg_cert_file: Path
    cmg_key_file: Path
    #: The CMG's client identity: the connection points take work only from a caller presenting it.
    cmg_identity_cert_file: Path
    cmg_identity_key_file: Path
    token_validation: tuple[str, int, str]  # host, port, path
    tenants: tuple[Tenant, ...]

    @classmethod
    def from_manifest(cls, manifest: SiteManifest) -> ProxySite:
        """What the proxy needs from a site manifest; unusable values raise ProxyConfigError naming them."""
        if not manifest.cp_urls:
            raise ProxyConfigError("site manifest names no connection point (cp_urls is empty)")
        points = tuple(_https_address(url) for url in manifest.cp_urls)
        files = {}
        for key in ("cmg_identity_cert_file", "cmg_identity_key_file"):
            if getattr(manifest, key) is None:
                raise ProxyConfigError(f"site manifest has no {key}: its connection points take work only from the "
                                       f"CMG's identity; restart the site with this cmg-harness")
        for key in ("ca_file", "cmg_cert_file", "cmg_key_file", "cmg_identity_cert_file", "cmg_identity_key_file"):
            path = Path(getattr(manifest, key)).resolve()
            if not path.is_file():
                raise ProxyConfigError(f"site manifest {key} {str(path)!r} is not a file")
            files[key] = path
        tenants = tuple(Tenant(t.tenant_id.lower(), t.client_app_id, t.resource_uri)
                        for t in manifest.tenants if t.onboarded)
        for tenant in tenants:
            _check_json_safe(tenant)
        return cls(connection_points=points, cp_server_name=_dns_server_name(manifest, points[0][0]),
                   ca_file=files["ca_file"], cmg_cert_file=files["cmg_cert_file"],
                   cmg_key_file=files["cmg_key_file"], cmg_identity_cert_file=files["cmg_identity_cert_file"],
                   cmg_identity_key_file=files["cmg_identity_key_file"],
                   token_validation=_http_address(manifest.token_validation_url), tenants=tenants)


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (port 0: pick a free one when rendering); only loopback IPv4 addresses are accepted."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ProxyConfigError(f"listen address must be HOST:PORT with a port 0..65535, got {text!r}")
    if not host.startswith("127.") or not all(part.isdigit() for part in host.split(".")) or host.count(".") != 3:
        raise ProxyConfigError(f"the proxy listens on loopback only (127.x.y.z), got {host!r}")
    return host, int(port_text)


def free_port(host: str) -> int:
    """A port the OS reports free on ``host`` right now (another process may take it before nginx binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


# --- helpers ---------------------------------------------------------------------------------------------------------


def _https_address(url: str) -> tuple[str, int]:
    parts = urlsplit(str(url))
    if parts.scheme != "https" or not parts.hostname or parts.port is None or parts.path not in ("", "/"):
        raise ProxyConfigError(f"connection point URL must be https://HOST:PORT, got {url!r}")
    return parts.hostname, parts.port


def _http_address(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None or not parts.path.startswith("/"):
        raise ProxyConfigError(f"token validation URL must be http://HOST:PORT/PATH, got {url!r}")
    if parts.query or any(ch in parts.path for ch in " ;{}$\"'\\"):
        raise ProxyConfigError(f"token validation URL path must be plain, got {url!r}")
    return parts.hostname, parts.port, parts.path


def _dns_server_name(manifest: SiteManifest, cp_host: str) -> str:
    """The name nginx checks the connection point's certificate for: a DNS name, since nginx does not match IP SANs.

    The site's certificates name both its address and ``localhost``, so an address in the manifest becomes ``localhost``.
    """
    name = manifest.cp_server_name or cp_host
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name
    return "localhost"


def _check_json_safe(tenant: Tenant) -> None:
    """Tenant values go into a single-quoted nginx string: refuse anything that could end it or name a variable."""
    for value in (tenant.tenant_id, tenant.client_app_id, tenant.resource_uri):
        if any(ch in value for ch in "'\"\\$;{}\n\r") or not value.isprintable():
            raise ProxyConfigError(f"tenant value {value!r} cannot be written into an nginx configuration")


@dataclass(frozen=True, slots=True)
class RenderedDirectory:
    """What every rendered proxy has: its directory, variant, where it listens and the CMG URL clients use."""

    directory: Path
    variant: str
    host: str
    port: int

    @property
    def url(self) -> str:
        """The CMG URL clients use (``--target``)."""
        return f"https://{self.host}:{self.port}"
