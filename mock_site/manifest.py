"""The site manifest (``site.json``): what a running site tells scripts, the harness and other role processes.

:class:`SiteManifest` is the one owner of the file: the site writes it through :meth:`SiteManifest.write`, and every
reader (the CLI, the Locust context, proxy rendering, dashboards, the report, tests) reads it through
:meth:`SiteManifest.read`. A missing, unreadable, newer or broken manifest raises :class:`ManifestError`, one line
naming the file and the field. Standard library only, so reading a manifest loads none of the servers.

A process that runs only some roles (``cmg-harness up --role``) writes a *partial* manifest (``site-<roles>.json``):
the same fields, with ``roles`` saying which roles it serves itself; URLs of roles it neither runs nor links are null.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The file name of a whole site's manifest in its state directory.
MANIFEST_NAME = "site.json"
#: The manifest format this code writes and the newest it reads. A file without ``schema_version`` is version 1.
SCHEMA_VERSION = 1


class ManifestError(ValueError):
    """A site manifest cannot be used; the one-line message names the file and the missing or bad field."""


@dataclass(frozen=True, slots=True)
class RoleUrl:
    """A URL that belongs to one role (a ``links`` or ``metrics_urls`` entry)."""

    role: str
    url: str


#: The ways the mock CMG reaches its connection points (``SiteManifest.cp_hop``).
CP_HOPS = ("channel", "https")


@dataclass(frozen=True, slots=True)
class ManifestTenant:
    """A Microsoft Entra tenant the site's mock Entra ID knows; ``onboarded``: the site knows it too."""

    tenant_id: str
    onboarded: bool
    client_app_id: str
    resource_uri: str


@dataclass(frozen=True, slots=True)
class SiteManifest:
    """Everything a script needs to find every part of a running site (the fields of ``site.json``, in its order)."""

    cmg_url: str | None            # the first mock CMG instance (or a linked one); None: no CMG (a proxy goes there)
    cmg_enabled: bool
    roles: tuple[str, ...]         # the roles this process serves itself
    links: tuple[RoleUrl, ...]     # roles served elsewhere, as this process reaches them
    token_validation_url: str
    cmg_urls: tuple[str, ...]      # every mock CMG instance of this process
    cp_urls: tuple[str, ...]
    mp_url: str | None
    server_auth_prefix: str
    mutual_auth_prefix: str
    role_id: str
    ca_file: Path
    cmg_cert_file: Path
    cmg_key_file: Path
    cp_server_name: str
    crl_url: str                   # the CRL file itself: the CRL distribution point in the CMG's certificate
    entra_url: str
    tenant_id: str                 # the default tenant
    tenants: tuple[ManifestTenant, ...]
    client_app_id: str
    resource_uri: str
    site_code: str
    hierarchy_id: str
    time_scale: float
    ccm_token_lifetime_s: float    # real seconds, after time scaling
    policy_interval_s: float       # real seconds, after time scaling
    faults_url: str
    faults_token: str
    metrics_urls: tuple[RoleUrl, ...]
    log_dir: Path
    db_path: Path
    state_dir: Path
    pid: int
    schema_version: int = SCHEMA_VERSION
    #: Real seconds of clock skew the site's token checks allow (300 s scaled); None in manifests written before it.
    token_leeway_s: float | None = None
    #: The certificate whose key signs CCM tokens (a validating proxy checks signatures against it).
    ccm_signing_cert_file: Path | None = None
    #: The CMG's client identity (chain PEM and key) that connection points require of whoever forwards to them: a
    #: proxy standing in for the CMG presents it. None in manifests written before connection points required it.
    cmg_identity_cert_file: Path | None = None
    cmg_identity_key_file: Path | None = None
    #: The content-enabled CMG's storage endpoint, where clients download content with signed URLs; None without a
    #: mock CMG here, and in manifests written before the storage had its own endpoint.
    storage_url: str | None = None
    #: The bulk registration token the site issued (3 days), as ccmsetup's ``/regtoken`` takes it; None in manifests
    #: written before token-authenticated devices.
    bulk_token_file: Path | None = None
    #: How the mock CMG reaches its connection points: ``channel`` (the CPs dial out to every CMG instance, the real
    #: way) or ``https`` (the CMG forwards to the CP's HTTPS listener, as a proxy under test does). None without a
    #: mock CMG here, with in-process hops, and in manifests written before it.
    cp_hop: str | None = None
    #: The port each CMG instance takes its connection points' channels on (one per instance; a real CMG uses
    #: 10140 + instance). Empty unless ``cp_hop`` is ``channel``.
    channel_ports: tuple[int, ...] | None = None
    #: Worker processes serving the roles (``up --processes``); None: this process serves them itself.
    processes: int | None = None
    #: The worker processes' PIDs (``pid`` is the parent that serves the control listener); None with one process.
    worker_pids: tuple[int, ...] | None = None

    # ------------------------------------------------------------------ lookups
    def link(self, role: str) -> str | None:
        """The URL this process was given for ``role`` run elsewhere, or None."""
        return next((item.url for item in self.links if item.role == role), None)

    def metrics_url(self, role: str) -> str | None:
        """Where ``role``'s Prometheus metrics are scraped, or None when this process does not serve it."""
        return next((item.url for item in self.metrics_urls if item.role == role), None)

    @property
    def onboarded_tenant_ids(self) -> tuple[str, ...]:
        """The tenants the site onboarded (devices of the others are refused by design)."""
        return tuple(tenant.tenant_id for tenant in self.tenants if tenant.onboarded)

    def replace(self, **changes: Any) -> SiteManifest:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ reading
    @classmethod
    def read(cls, path: Path | str) -> SiteManifest:
        """The manifest in the file at ``path``; :class:`ManifestError` naming the file when it cannot be used."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ManifestError(f"site manifest {str(path)!r} not found (start a site with `cmg-harness up`)") \
                from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ManifestError(f"site manifest {str(path)!r} is not readable: {_reason(exc)}") from None
        return cls.load(text, source=str(path))

    @classmethod
    def load(cls, text: str, *, source: str = "<text>") -> SiteManifest:
        """The manifest in JSON ``text``; ``source`` names it in errors."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ManifestError(f"site manifest {source!r} is not JSON: {exc}") from None
        return cls.from_dict(data, source=source)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<manifest>") -> SiteManifest:
        """The manifest of a decoded ``site.json`` object, every field checked."""
        if not isinstance(data, Mapping):
            raise ManifestError(f"site manifest {source!r} is not a JSON object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ManifestError(f"site manifest {source!r}: field 'schema_version' must be a whole number >= 1, "
                                f"got {version!r}")
        if version > SCHEMA_VERSION:
            raise ManifestError(f"site manifest {source!r}: field 'schema_version' is {version}, newer than this "
                                f"cmg-harness reads ({SCHEMA_VERSION}); use the cmg-harness that wrote it")
        values: dict[str, Any] = {"schema_version": version}
        for name, parse in _OPTIONAL_FIELDS.items():
            if data.get(name) is not None:
                try:
                    values[name] = parse(data[name])
                except (TypeError, ValueError) as exc:
                    raise ManifestError(f"site manifest {source!r}: field {name!r} {exc}") from None
        for name, parse in _FIELDS.items():
            if name not in data:
                raise ManifestError(f"site manifest {source!r}: field {name!r} is missing")
            try:
                values[name] = parse(data[name])
            except (TypeError, ValueError) as exc:
                raise ManifestError(f"site manifest {source!r}: field {name!r} {exc}") from None
        return cls(**values)

    @classmethod
    def coerce(cls, manifest: SiteManifest | Mapping[str, Any]) -> SiteManifest:
        """``manifest`` itself, or the manifest of a decoded ``site.json`` mapping (for callers still holding one)."""
        return manifest if isinstance(manifest, SiteManifest) else cls.from_dict(manifest)

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """The ``site.json`` object: the same keys and values as ever, plus ``schema_version``."""
        out: dict[str, Any] = {"schema_version": self.schema_version}
        for name in _FIELDS:
            value = getattr(self, name)
            if name in ("links", "metrics_urls"):
                value = {item.role: item.url for item in value}
            elif name == "tenants":
                value = [dataclasses.asdict(tenant) for tenant in value]
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        for name in _OPTIONAL_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def write(self, path: Path | str) -> Path:
        """Write the manifest to ``path`` atomically (a temporary file, then a rename), readable by the owner only:
        it holds the fault API's bearer token."""
        path = Path(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self.to_json())
            os.chmod(tmp, 0o600)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


# --- field parsers: each raises ValueError/TypeError with the rest of the sentence ("must be ..., got ...") -----------


def _reason(exc: BaseException) -> str:
    return getattr(exc, "strerror", None) or str(exc)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be text, got {value!r}")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"must be an http(s) URL, got {value!r}")
    return value


def _optional_url(value: Any) -> str | None:
    return None if value is None else _url(value)


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"must be true or false, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"must be a number, got {value!r}")
    return float(value)


def _positive(value: Any) -> float:
    number = _number(value)
    if not number > 0:
        raise ValueError(f"must be > 0, got {value!r}")
    return number


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"must be a whole number, got {value!r}")
    return value


def _one_of(value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise TypeError(f"must be a list of ports, got {value!r}")
    ports = tuple(_whole(item) for item in value)
    bad = [port for port in ports if not 0 < port < 65536]
    if bad:
        raise ValueError(f"must hold ports 1..65535, got {bad[0]!r}")
    return ports


def _pids(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(isinstance(item, int) and not isinstance(item, bool) and item > 0
                                              for item in value):
        raise TypeError(f"must be a list of process ids, got {value!r}")
    return tuple(value)


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise TypeError(f"must be a file path, got {value!r}")
    return Path(value)


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"must be a list of text, got {value!r}")
    return tuple(value)


def _urls(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"must be a list of URLs, got {value!r}")
    return tuple(_url(item) for item in value)


def _role_urls(value: Any) -> tuple[RoleUrl, ...]:
    if not isinstance(value, Mapping):
        raise TypeError(f"must be an object of role: URL, got {value!r}")
    return tuple(RoleUrl(_text(role), _url(url)) for role, url in value.items())


def _tenants(value: Any) -> tuple[ManifestTenant, ...]:
    if not isinstance(value, list):
        raise TypeError(f"must be a list of tenants, got {value!r}")
    tenants = []
    for number, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise TypeError(f"[{number}] must be an object, got {item!r}")
        try:
            tenants.append(ManifestTenant(tenant_id=_text(item["tenant_id"]), onboarded=_flag(item["onboarded"]),
                                          client_app_id=_text(item["client_app_id"]),
                                          resource_uri=_text(item["resource_uri"])))
        except (KeyError, TypeError) as exc:
            what = f"lacks {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"[{number}] {what}") from None
    return tuple(tenants)


#: Every field of ``site.json`` after ``schema_version``, in the file's order, with its parser.
_FIELDS: dict[str, Callable[[Any], Any]] = {
    "cmg_url": _optional_url,
    "cmg_enabled": _flag,
    "roles": _texts,
    "links": _role_urls,
    "token_validation_url": _url,
    "cmg_urls": _urls,
    "cp_urls": _urls,
    "mp_url": _optional_url,
    "server_auth_prefix": _text,
    "mutual_auth_prefix": _text,
    "role_id": _text,
    "ca_file": _path,
    "cmg_cert_file": _path,
    "cmg_key_file": _path,
    "cp_server_name": _text,
    "crl_url": _url,
    "entra_url": _url,
    "tenant_id": _text,
    "tenants": _tenants,
    "client_app_id": _text,
    "resource_uri": _text,
    "site_code": _text,
    "hierarchy_id": _text,
    "time_scale": _positive,
    "ccm_token_lifetime_s": _positive,
    "policy_interval_s": _positive,
    "faults_url": _url,
    "faults_token": _text,
    "metrics_urls": _role_urls,
    "log_dir": _path,
    "db_path": _path,
    "state_dir": _path,
    "pid": _whole,
}

#: Fields a manifest may lack (written by a later cmg-harness than the oldest that reads schema 1).
_OPTIONAL_FIELDS: dict[str, Callable[[Any], Any]] = {
    "token_leeway_s": _positive,
    "ccm_signing_cert_file": _path,
    "cmg_identity_cert_file": _path,
    "cmg_identity_key_file": _path,
    "storage_url": _url,
    "bulk_token_file": _path,
    "cp_hop": lambda value: _one_of(value, CP_HOPS),
    "channel_ports": lambda value: _ports(value),
    "processes": _whole,
    "worker_pids": _pids,
}
