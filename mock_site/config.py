"""Site configuration: one frozen value object, read once at the edge (CLI flags or a manifest)."""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from mock_site.limits import ConnectionLimits

MINUTES = 60.0
HOURS = 3600.0

#: The role id the walk-through shows in CMG URLs (``/CCM_Proxy_MutualAuth/72186325152220500/...``).
DEFAULT_ROLE_ID = "72186325152220500"
#: The role id the walk-through's CMGService.log shows for the ServerAuth side.
DEFAULT_SERVER_ROLE_ID = "72057594037937981"
DEFAULT_SITE_CODE = "MEM"
DEFAULT_TENANT_ID = "9aaf466a-3f40-4468-b3cd-f0010f21f05a"
DEFAULT_CLIENT_APP_ID = "0b7c8ab3-9ea1-4ffa-b2b9-8ffdd944bd8b"
DEFAULT_RESOURCE_URI = "https://ConfigMgrService"
DEFAULT_HIERARCHY_ID = "8ed3174b-e814-41b5-b51c-fb368f0d4003"


class ConfigError(ValueError):
    """A configuration value is unusable; the message names it."""


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """A Microsoft Entra tenant known to the mock Entra ID; ``onboarded`` says whether the site knows it."""

    tenant_id: str
    onboarded: bool = True
    client_app_id: str = DEFAULT_CLIENT_APP_ID
    resource_uri: str = DEFAULT_RESOURCE_URI


@dataclass(frozen=True, slots=True)
class SiteConfig:
    """Everything a site needs to start.

    Names carry their unit. ``*_site_seconds`` are site time: ``scaled()`` turns them into the real seconds they last
    under ``time_scale`` (so a fast run keeps the CCM token lifetime and the policy interval in proportion).
    The token leeway is site time too: at ``--time-scale 1200`` a CCM token meant to live 24 s must not be accepted
    for 300 real seconds more. ``*_seconds`` are real seconds and do not scale: the log periods (what an operator
    reads in the logs).
    """

    state_dir: Path
    host: str = "127.0.0.1"
    time_scale: float = 1.0
    site_code: str = DEFAULT_SITE_CODE
    hierarchy_id: str = DEFAULT_HIERARCHY_ID
    role_id: str = DEFAULT_ROLE_ID
    site_version: str = "5.00.8968.1000"
    build_number: int = 8968
    tenants: tuple[TenantConfig, ...] = (
        TenantConfig(DEFAULT_TENANT_ID),
        TenantConfig("2ca9a796-a1a6-43ec-88f1-5935b32155c5"),
        TenantConfig("c8c82542-203c-4df9-9d86-cdd4dae67e0a", onboarded=False),
    )
    cmg_instances: int = 1
    connection_points: int = 1
    ccm_token_lifetime_site_seconds: float = 8 * HOURS
    entra_token_lifetime_site_seconds: float = 75 * MINUTES
    policy_interval_site_seconds: float = 1 * HOURS
    token_leeway_site_seconds: float = 5 * MINUTES
    cmgservice_log_period_seconds: float = 5 * MINUTES
    cp_report_period_seconds: float = 5 * MINUTES
    log_max_bytes: int = 250_000
    client_content_bytes: int = 256 * 1024
    package_content_bytes: int = 64 * 1024
    clients_per_cmg_instance: int = 6000
    inprocess_hops: bool = False
    #: How the CMG reaches the connection points: "channel" (each CP dials every CMG instance and requests come down
    #: that channel, as in ConfigMgr) or "https" (the CMG forwards to the CP's listener, as an nginx-style proxy does).
    cp_hop: str = "channel"
    #: How often a connection point checks each channel (ConfigMgr: every minute); a check unanswered drops it.
    cp_channel_check_seconds: float = 60.0
    #: False runs the site without the mock CMG, for a CMG-style proxy under test in front of the connection point.
    cmg_enabled: bool = True
    #: False swaps the Prometheus instrumentation for no-ops (the benchmark measures its overhead this way).
    metrics_enabled: bool = True
    ports: dict[str, int] = field(default_factory=dict)
    #: Per listener: header timeout (TLS handshake included), header size limits, open-connection cap.
    connection_limits: ConnectionLimits = ConnectionLimits()

    def __post_init__(self) -> None:
        if not (self.time_scale > 0):
            raise ConfigError(f"time scale must be > 0, got {self.time_scale!r}")
        if not 1 <= self.cmg_instances <= 16:
            raise ConfigError(f"cmg instances must be 1..16 (a CMG has at most 16 VM instances), got {self.cmg_instances}")
        if self.connection_points < 1:
            raise ConfigError(f"connection points must be >= 1, got {self.connection_points}")
        if self.cp_hop not in ("channel", "https"):
            raise ConfigError(f"connection point hop must be channel or https, got {self.cp_hop!r}")
        if self.cmgservice_log_period_seconds <= 0:
            raise ConfigError(f"CMGService.log period must be > 0 s, got {self.cmgservice_log_period_seconds}")
        try:
            uuid.UUID(self.hierarchy_id)
        except ValueError:
            raise ConfigError(f"hierarchy id is not a GUID: {self.hierarchy_id!r}") from None
        for tenant in self.tenants:
            try:
                uuid.UUID(tenant.tenant_id)
            except ValueError:
                raise ConfigError(f"tenant id is not a GUID: {tenant.tenant_id!r}") from None

    def scaled(self, site_seconds: float) -> float:
        """Real seconds that ``site_seconds`` of site time take under the time scale."""
        return site_seconds / self.time_scale

    @property
    def default_tenant(self) -> TenantConfig:
        return self.tenants[0]

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def db_path(self) -> Path:
        return self.state_dir / "site.db"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    def replace(self, **changes: object) -> SiteConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]
