"""The whole mock site in one process: every role on its own loopback port, plus the control listener.

Roles talk to each other over HTTP(S) by default (CMG → connection point → MP, MP → Entra JWKS), so any of them can be
replaced by a real server; ``SiteConfig.inprocess_hops`` makes the hops direct ASGI calls instead, for measuring the
site's own ceiling. ``Site.manifest()`` is the :class:`SiteManifest` that ``cmg-harness up`` writes to ``site.json``
for scripts and other tools.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from cryptography.hazmat.primitives.serialization import Encoding
from prometheus_client import CollectorRegistry

from cmg_protocol import tokens, urlmap
from cmg_protocol.clock import Clock, system_clock
from cmg_protocol.storage_urls import UrlSigner
from mock_site.cmg import AadTenant, CmgApp, ContentStorage, ContentStore, TokenValidator
from mock_site.config import SiteConfig
from mock_site.connection_point import ConnectionPointApp
from mock_site.control import control_listener_app
from mock_site.cp_channel import ChannelClient, ChannelHub, ChannelTarget
from mock_site.crl import crl_app
from mock_site.db import SiteDatabase
from mock_site.entra import EntraIssuer, entra_app
from mock_site.faults import FaultMiddleware, FaultRegistry
from mock_site.joining import LinkProbe
from mock_site.logs import SiteLogs
from mock_site.manifest import MANIFEST_NAME, ManifestTenant, RoleUrl, SiteManifest
from mock_site.metrics import (
    CMGServiceLogger,
    CMGServiceStats,
    ConnectionPointReport,
    NullMetrics,
    SiteMetrics,
    StatsLogger,
)
from mock_site.metrics.active_faults import ActiveFaultsCollector
from mock_site.metrics.storage_egress import StorageEgress
from mock_site.mp import MpApp
from mock_site.pki import SitePki
from mock_site.server import Listener, ServerGroup
from mock_site.site_tokens import BULK_TOKEN_NAME, SiteTokenIssuer, SiteTokenVerifier, TokenManager, site_key_of
from mock_site.state_dir import (
    LOCK_NAME,
    SiteStateError,
    StateDirLock,
    load_or_create_token,
    prepare_state_dir,
)
from mock_site.storage import ROLE as STORAGE_ROLE
from mock_site.storage import StorageApp, load_or_create_url_key
from mock_site.sts import CcmSts
from mock_site.token_checks import CcmTokenVerifier, EntraTokenVerifier, JwksCache
from mock_site.upstream import ChannelUpstream, HttpUpstream, InProcessUpstream, RoundRobin, Upstream

log = logging.getLogger("mock_site.site")

PORTS_NAME = "ports.json"
#: The roles of a site; ``cmg-harness up --role`` runs a subset in one process and links to the others by URL.
ROLES = ("crl", "entra", "mp", "cp", "cmg")


class Site:
    """Builds every role of the mock site and runs them in the current asyncio loop."""

    def __init__(self, config: SiteConfig, *, clock: Clock = system_clock, rng: random.Random | None = None,
                 registry: CollectorRegistry | None = None, logs_enabled: bool = True,
                 roles: Iterable[str] = ROLES, links: Mapping[str, str] | None = None,
                 cmg_app_type: type[CmgApp] = CmgApp, check_links: bool = True) -> None:
        self.config = config
        # The class each CMG instance runs; mock_site.testing passes a deliberately broken one to test the verdicts.
        self.cmg_app_type = cmg_app_type
        self.roles = frozenset(roles)
        unknown = sorted(self.roles - set(ROLES))
        if unknown or not self.roles:
            raise SiteStateError(f"unknown role(s) {', '.join(unknown) or '(none)'}; roles: {', '.join(ROLES)}")
        self.links = dict(links or {})
        bad_links = sorted(set(self.links) - set(ROLES))
        if bad_links:
            raise SiteStateError(f"--link names unknown role(s) {', '.join(bad_links)}; roles: {', '.join(ROLES)}")
        #: Probe every link before serving (:class:`LinkProbe`); off only for tests of a site linked to nothing real.
        self.check_links = check_links
        self.clock = clock
        self.rng = rng or random.Random()
        self.registry = registry or CollectorRegistry()
        prepare_state_dir(config.state_dir)
        self.state_lock = StateDirLock(config.state_dir / f"{LOCK_NAME}{self._suffix}")
        self.state_lock.acquire()
        try:
            self._set_up(config, logs_enabled)
        except BaseException:
            self.state_lock.release()
            raise

    def _set_up(self, config: SiteConfig, logs_enabled: bool) -> None:
        clock = self.clock
        self.pki = SitePki.load_or_create(config.pki_dir, clock=clock)
        self.db = SiteDatabase(config.db_path, clock=clock, rng=self.rng)
        for tenant in config.tenants:
            self.db.onboard_tenant(tenant.tenant_id, tenant.client_app_id, tenant.resource_uri,
                                   onboarded=tenant.onboarded)
        self.logs = SiteLogs(config.log_dir, clock=clock, max_bytes=config.log_max_bytes, enabled=logs_enabled)
        self.faults = FaultRegistry(clock, self.rng, counter=SiteMetrics("cmg", registry=self.registry)
                                    .families.fault_injections if config.metrics_enabled else None)
        self.faults.subscribe(self._on_fault_change)
        self.faults_token = load_or_create_token(config.state_dir)
        entra_metrics = self._metrics("entra")
        self.entra = EntraIssuer(clock, self.rng, tenants=config.tenants,
                                 lifetime=config.scaled(config.entra_token_lifetime_site_seconds),
                                 on_mint=lambda: entra_metrics.token_issued("entra"))
        self.registry.register(ActiveFaultsCollector(self.faults))
        self.content = ContentStore(config.package_content_bytes)
        self.group: ServerGroup | None = None
        self.listeners: dict[str, Listener] = {}
        self.cmg_apps: list[CmgApp] = []
        self.cmg_stats: list[CMGServiceStats] = []
        self.cp_reports: list[ConnectionPointReport] = []
        self._upstreams: list[Upstream] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._cmg_loggers: list[StatsLogger] = []
        self._jwks_session: aiohttp.ClientSession | None = None
        self._cmg_serial: int | None = None
        self.storage: ContentStorage | None = None
        self.storage_egress: StorageEgress | None = None
        #: The connection points' outbound channels (``uses_channels``): each CMG instance's endpoint, by port name,
        #: and each connection point's dialler.
        self.channel_hubs: dict[str, ChannelHub] = {}
        self.channel_clients: list[ChannelClient] = []
        self._cp_apps: list[tuple[str, Any, Any]] = []

    # ------------------------------------------------------------------ set-up
    @property
    def _suffix(self) -> str:
        """'' for a whole site; '-cmg' (say) for a process that runs some roles, so processes share a state dir."""
        return "" if self.roles == frozenset(ROLES) else "-" + "-".join(r for r in ROLES if r in self.roles)

    @property
    def manifest_path(self) -> Path:
        return self.config.state_dir / MANIFEST_NAME.replace(".json", f"{self._suffix}.json")

    def _remembered_ports(self) -> dict[str, int]:
        path = self.config.state_dir / PORTS_NAME.replace(".json", f"{self._suffix}.json")
        ports: dict[str, int] = {}
        if path.exists():
            try:
                ports = {k: int(v) for k, v in json.loads(path.read_text()).items()}
            except (ValueError, AttributeError):
                log.warning("ignoring unreadable %s", path)
        ports.update(self.config.ports)
        return ports

    def _listener(self, name: str, app: Any, ssl_context: ssl.SSLContext | None, ports: dict[str, int]) -> Listener:
        listener = Listener(name=name, app=app, ssl_context=ssl_context, host=self.config.host,
                            port=ports.get(name, 0), limits=self.config.connection_limits)
        listener.bind()
        self.listeners[name] = listener
        return listener

    def _server_context(self, bundle: Any, *, client_certs: str = "none") -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        bundle.configure_server_context(ctx)
        if client_certs != "none":
            ctx.load_verify_locations(cafile=str(self.pki.ca_file))
            ctx.verify_mode = ssl.CERT_REQUIRED if client_certs == "required" else ssl.CERT_OPTIONAL
        return ctx

    def _client_context(self, client_bundle: Any = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.pki.ca_file))
        if client_bundle is not None:
            client_bundle.configure_client_context(ctx)
        return ctx

    def _metrics(self, role: str) -> Any:
        if not self.config.metrics_enabled:
            return NullMetrics(role)
        return SiteMetrics(role, registry=self.registry)

    def _on_fault_change(self, event: Any = None) -> None:
        """Keep certificate-level faults in step with the fault registry (the CRL lists the CMG cert while it is on)."""
        if self._cmg_serial is None:
            return
        active = {fault.name for fault in self.faults.active()}
        if "cmg_cert_revoked" in active:
            self.pki.revoke(self._cmg_serial)
        else:
            self.pki.unrevoke(self._cmg_serial)

    def _local(self, role: str) -> bool:
        return role in self.roles

    def _link(self, role: str) -> str:
        try:
            return self.links[role]
        except KeyError:
            raise SiteStateError(f"role {role!r} is not run here: give its URL with --link {role}=URL") from None

    def check_linked_roles(self) -> None:
        """Refuse (:class:`JoinError`) a link that does not serve what this process needs from its role."""
        if not self.links or not self.check_links:
            return
        probe = LinkProbe(ca=self.pki.ca_certificate, server_context=self._client_context(),
                          mp_context=self._client_context(self.pki.cp_client_cert()),
                          cp_context=self._client_context(self.pki.cmg_client_cert()))
        for role, url in self.links.items():
            probe.check(role, url)

    def build(self) -> ServerGroup:
        """Check the links, create the apps of the roles run here and bind their listeners (ports are known after this
        returns)."""
        config = self.config
        self.check_linked_roles()
        ports = self._remembered_ports()
        hosts = (config.host, "localhost") if config.host != "localhost" else ("localhost", "127.0.0.1")

        if self._local("crl"):
            crl_metrics = self._metrics("crl")

            def crl_fetched(path: str, status: int, size: int) -> None:
                crl_metrics.crl_fetch("served" if status == 200 else "dropped" if status == 0 else "failed")

            crl = self._listener("crl", FaultMiddleware(crl_app(self.pki, faults=self.faults, metrics_hook=crl_fetched),
                                                        faults=self.faults, role="crl"), None, ports)
            self.crl_url = f"{crl.url}/pki/site.crl"
        else:
            self.crl_url = self._link("crl")
        cmg_bundle = self.pki.cmg_server_cert(hosts, crl_url=self.crl_url)
        self._cmg_serial = cmg_bundle.serial
        self._on_fault_change()

        if self._local("entra"):
            entra_url = self._listener("entra", FaultMiddleware(entra_app(self.entra, faults=self.faults),
                                                                faults=self.faults, role="entra"),
                                       self._server_context(self.pki.entra_server_cert(hosts)), ports).url
        else:
            entra_url = self._link("entra")
        self.entra_url = entra_url

        tenants_onboarded = {t.tenant_id.lower() for t in config.tenants if t.onboarded}

        def onboarded() -> set[str]:
            return tenants_onboarded

        jwks = JwksCache(self._jwks_fetcher(entra_url), clock=self.clock)
        audiences = sorted({tokens.CONFIGMGR_RESOURCE} | {t.resource_uri for t in config.tenants})
        # The clock-skew leeway is a site duration like the token lifetimes: at --time-scale 1200 a CCM token that
        # lives 24 s must not be accepted for another 300 s.
        leeway = config.scaled(config.token_leeway_site_seconds)
        entra_verifier = EntraTokenVerifier(jwks, audiences=audiences, tenants=onboarded, clock=self.clock,
                                            leeway=leeway)
        ccm_verifier = CcmTokenVerifier(self.pki.ccm_public_keys(), hierarchy_id=config.hierarchy_id,
                                        tenants=onboarded, clock=self.clock, leeway=leeway)
        self._set_up_site_tokens(leeway)

        mp_bundle = self.pki.mp_server_cert(hosts)
        cmg_count = config.cmg_instances if config.cmg_enabled and self._local("cmg") else 0
        cmg_listeners = [self._listener(f"cmg{i}" if i else "cmg", None,
                                        self._server_context(cmg_bundle, client_certs="optional"), ports)
                         for i in range(cmg_count)]
        # Without the mock CMG here, the proxy in front tells the MP its public address (X-CMG-Request-URI).
        if cmg_listeners:
            cmg_host = f"{cmg_listeners[0].host}:{cmg_listeners[0].port}"
        else:
            cmg_host = urlsplit(self.links.get("cmg", "https://cmg.invalid")).netloc

        mp_wrapped: Any = None
        if self._local("mp"):
            mp_listener = self._listener("mp", None, self._server_context(mp_bundle, client_certs="required"), ports)
            mp_url = mp_listener.url
            mp_host = f"{mp_listener.host}:{mp_listener.port}"
            sts = CcmSts(config=config, verifier=entra_verifier, signing_key=self.pki.ccm_signing_key,
                         signing_kid=self.pki.ccm_signing_kid, db=self.db, faults=self.faults,
                         metrics=self._metrics("sts"), logs=self.logs, clock=self.clock, mp_public_host=mp_host,
                         rng=self.rng)
            mp_app = MpApp(config=config, sts=sts, ccm_verifier=ccm_verifier, entra_verifier=entra_verifier,
                           db=self.db, faults=self.faults, metrics=self._metrics("mp"), logs=self.logs,
                           clock=self.clock, public_host=mp_host, cmg_host=cmg_host, rng=self.rng,
                           content=self.content, token_manager=TokenManager(self.site_tokens))
            mp_app.ccm_verifier = self._site_token_verifier(ccm_verifier, role="mp")
            mp_wrapped = FaultMiddleware(mp_app, faults=self.faults, role="mp")
            mp_listener.app = mp_wrapped
        elif self._local("cp"):  # the connection point forwards to the MP; no other role here talks to it
            mp_url = self._link("mp")
            mp_host = urlsplit(mp_url).netloc
        else:
            mp_url = self.links.get("mp", "")
            mp_host = urlsplit(mp_url).netloc

        cp_upstreams: list[Upstream] = []
        # The CMG's identity towards its connection points: they take work from no one else (mutual TLS).
        cmg_identity = self.pki.cmg_client_cert()
        cmg_identity_der = cmg_identity.certificate.public_bytes(encoding=Encoding.DER)
        if self._local("cp"):
            cp_bundle = self.pki.cp_client_cert()
            for index in range(config.connection_points):
                name = f"cp{index}" if index else "cp"
                mp_upstream: Upstream
                if config.inprocess_hops and mp_wrapped is not None:
                    mp_upstream = InProcessUpstream(name="mp", app=mp_wrapped,
                                                    client_cert_der=cp_bundle.certificate.public_bytes(
                                                        encoding=Encoding.DER))
                else:
                    mp_upstream = HttpUpstream(name="mp", base_url=mp_url,
                                               ssl_context=self._client_context(cp_bundle))
                self._upstreams.append(mp_upstream)
                report = ConnectionPointReport()
                self.cp_reports.append(report)
                cp_app = FaultMiddleware(
                    ConnectionPointApp(name=name, mp=mp_upstream, mp_public_host=mp_host, faults=self.faults,
                                       metrics=self._metrics("cp"), report=report, logs=self.logs),
                    faults=self.faults, role="cp")
                cp_listener = self._listener(name, cp_app, self._server_context(mp_bundle, client_certs="required"),
                                             ports)
                self._cp_apps.append((name, cp_app, cp_bundle))
                if config.inprocess_hops:
                    cp_upstreams.append(InProcessUpstream(name=cp_listener.name, app=cp_app,
                                                          client_cert_der=cmg_identity_der))
                else:
                    cp_upstreams.append(HttpUpstream(name=cp_listener.name, base_url=cp_listener.url,
                                                     ssl_context=self._client_context(cmg_identity)))
        elif cmg_listeners:
            cp_upstreams = [HttpUpstream(name=f"cp{i}" if i else "cp", base_url=url,
                                         ssl_context=self._client_context(cmg_identity))
                            for i, url in enumerate(self._link("cp").split(","))]
        self._upstreams.extend(cp_upstreams)

        if cmg_listeners:
            self.storage = self._build_storage(hosts, ports)
            round_robin = RoundRobin(cp_upstreams)
            instance_hops = self._build_channels(cmg_bundle, len(cmg_listeners), ports)
            aad_tenants = {t.tenant_id.lower(): AadTenant(t.tenant_id, t.client_app_id, t.resource_uri)
                           for t in config.tenants if t.onboarded}
            cmg_metrics = self._metrics("cmg")
            for index, listener in enumerate(cmg_listeners):
                stats = CMGServiceStats(self.clock)
                self.cmg_stats.append(stats)
                app = self.cmg_app_type(instance=index, public_host=f"{listener.host}:{listener.port}",
                                        connection_points=instance_hops[index] if instance_hops else round_robin,
                                        ccm_verifier=self._site_token_verifier(ccm_verifier, role="cmg"),
                                        entra_verifier=entra_verifier, tenants=lambda: aad_tenants, faults=self.faults,
                                        metrics=cmg_metrics, stats=stats, logs=self.logs, content=self.content,
                                        clock=self.clock, storage=self.storage)
                self.cmg_apps.append(app)
                listener.app = FaultMiddleware(app, faults=self.faults, role="cmg",
                                               cmg_instances=config.cmg_instances)

        self._listener("control", control_listener_app(self.faults, token=self.faults_token, registry=self.registry,
                                                       validator=TokenValidator(
                                                           self._site_token_verifier(ccm_verifier, role="cmg"),
                                                           entra_verifier)),
                       None, ports)
        self._save_ports()
        self.group = ServerGroup(list(self.listeners.values()))
        return self.group

    def _set_up_site_tokens(self, leeway: float) -> None:
        """Token-authenticated devices: the site's bulk registration token (written to the state directory, where
        ccmsetup's ``/regtoken`` takes it from) and the issuer of client-unique tokens."""
        config = self.config
        self.site_tokens = SiteTokenIssuer(site_key=site_key_of(self.pki), hierarchy_id=config.hierarchy_id,
                                           tenant_id=config.default_tenant.tenant_id, clock=self.clock,
                                           scaled=config.scaled, db=self.db)
        self._site_token_leeway = leeway
        self.bulk_token_file = config.state_dir / BULK_TOKEN_NAME
        self.site_tokens.write_bulk_token(self.bulk_token_file)

    def _site_token_verifier(self, ccm_verifier: Any, *, role: str) -> SiteTokenVerifier:
        """The CCM token verifier of ``role``, widened to site tokens (the bulk token faults apply at the CMG)."""
        return SiteTokenVerifier(ccm_verifier, self.site_tokens, leeway=self._site_token_leeway,
                                 faults=self.faults if role == "cmg" else None, role=role)

    def _build_storage(self, hosts: tuple[str, str], ports: dict[str, int]) -> ContentStorage:
        """The content-enabled CMG's storage: its own listener and certificate, served by the process that runs the
        CMG (it belongs to the CMG's deployment), with the URL signing key every process of the site shares."""
        signer = UrlSigner(load_or_create_url_key(self.config.pki_dir), issuer=f"urn:sccm:cmg:{self.config.role_id}")
        self.storage_egress = StorageEgress(clock=self.clock, time_scale=self.config.time_scale)
        if self.config.metrics_enabled:
            self.registry.register(self.storage_egress)
        app = StorageApp(signer=signer, content=self.content, faults=self.faults, metrics=self._metrics(STORAGE_ROLE),
                         egress=self.storage_egress, clock=self.clock)
        bundle = self.pki.storage_server_cert(hosts, crl_url=self.crl_url)
        # The generic faults that apply to storage (bandwidth) come from the same middleware as at the other roles.
        listener = self._listener(STORAGE_ROLE, FaultMiddleware(app, faults=self.faults, role=STORAGE_ROLE),
                                  self._server_context(bundle), ports)
        return ContentStorage(base_url=listener.url, signer=signer, tenant_id=self.config.default_tenant.tenant_id)

    # ------------------------------------------------------------ CP channels
    @property
    def uses_channels(self) -> bool:
        """Whether the CMG reaches the connection points down the channels they open (both roles run here, over
        sockets); otherwise it forwards to their HTTPS listeners."""
        config = self.config
        return config.cp_hop == "channel" and not config.inprocess_hops and self._local("cp") and self._local("cmg") \
            and config.cmg_enabled

    def _build_channels(self, cmg_bundle: Any, instances: int, ports: dict[str, int]) -> list[RoundRobin]:
        """The channel endpoint of every CMG instance (bound now) and each connection point's dialler; the CMG
        instances' ways to their connection points (empty: the direct HTTPS hop)."""
        if not self.uses_channels:
            return []
        config = self.config
        hops = []
        for index in range(instances):
            name = f"cmg{index}-channel" if index else "cmg-channel"
            hub = ChannelHub(instance=index, ssl_context=self._server_context(cmg_bundle, client_certs="required"),
                             faults=self.faults, logs=self.logs, host=config.host, port=ports.get(name, 0))
            hub.bind()
            self.faults.subscribe(hub.on_fault_change)
            self.channel_hubs[name] = hub
            hops.append(RoundRobin([ChannelUpstream(name="cp", hub=hub)]))
        # The CMG's certificate names localhost whatever the listening address (mock_site.pki).
        targets = [ChannelTarget(config.host, hub.port, "localhost") for hub in self.channel_hubs.values()]
        for name, cp_app, cp_bundle in self._cp_apps:
            self.channel_clients.append(ChannelClient(name=name, app=cp_app, targets=targets,
                                                      ssl_context=self._client_context(cp_bundle), logs=self.logs,
                                                      check_interval=config.cp_channel_check_seconds))
        return hops

    async def _start_channels(self, timeout: float = 10.0) -> None:
        for hub in self.channel_hubs.values():
            await hub.start()
        for client in self.channel_clients:
            await client.start()
        for name, hub in self.channel_hubs.items():
            if not await hub.wait_connected(len(self.channel_clients), timeout):
                log.warning("%s: %d of %d connection points connected after %s s", name, len(hub.connected()),
                            len(self.channel_clients), timeout)

    async def start_worker_channels(self) -> None:
        """In a worker process of ``up --processes``: this worker's connection points dial this worker's CMG
        instances, on ports of the worker's own. The channel sockets bound before the fork are shared by every worker,
        and a channel accepted by another worker's CMG would leave this one's CMG with no connection point."""
        if not self.channel_hubs:
            return
        for hub in self.channel_hubs.values():
            hub.rebind()
        targets = [ChannelTarget(self.config.host, hub.port, "localhost") for hub in self.channel_hubs.values()]
        for client in self.channel_clients:
            client.targets = list(targets)
        await self._start_channels()

    async def stop_channels(self) -> None:
        """Close the connection points' channels and the CMG instances' channel endpoints."""
        await self._stop_channels()

    async def _stop_channels(self) -> None:
        for client in self.channel_clients:
            await client.stop()
        for hub in self.channel_hubs.values():
            await hub.stop()

    async def restart_connection_points(self, down_seconds: float = 0.0) -> None:
        """Restart every connection point's channels: they close, stay closed ``down_seconds``, and are rebuilt."""
        for client in self.channel_clients:
            await client.stop()
        await asyncio.sleep(down_seconds)
        for client in self.channel_clients:
            await client.start()

    def _jwks_fetcher(self, entra_url: str) -> Any:
        if self.config.inprocess_hops:
            async def fetch_inprocess() -> dict[str, Any]:
                return self.entra.jwks()
            return fetch_inprocess
        context = self._client_context()

        async def fetch() -> dict[str, Any]:
            if self._jwks_session is None or self._jwks_session.closed:
                self._jwks_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context))
            async with self._jwks_session.get(f"{entra_url}/common/discovery/keys") as response:
                response.raise_for_status()
                return await response.json()
        return fetch

    def _save_ports(self) -> None:
        ports = {name: listener.port for name, listener in self.listeners.items()}
        ports.update((name, hub.port) for name, hub in self.channel_hubs.items())
        path = self.config.state_dir / PORTS_NAME.replace(".json", f"{self._suffix}.json")
        path.write_text(json.dumps(ports, indent=2, sort_keys=True))

    # ---------------------------------------------------------------- running
    async def start(self) -> None:
        """Build (if needed) and start every listener and the periodic log writers; write the manifest."""
        if self.group is None:
            self.build()
        assert self.group is not None
        await self.group.start()
        await self._start_channels()
        period = self.config.cmgservice_log_period_seconds
        for index, stats in enumerate(self.cmg_stats):
            writer = self.logs.writer("CMGService.log" if index == 0 else f"CMGService_IN_{index}.log")
            cmg_logger = CMGServiceLogger(stats, writer, period)
            self._cmg_loggers.append(cmg_logger)
            self._tasks.append(asyncio.create_task(cmg_logger.run(), name=f"cmgservice-log-{index}"))
        cp_writer = self.logs.writer("SMS_CLOUD_PROXYCONNECTOR.log")
        for report in self.cp_reports:
            cp_logger = StatsLogger(report, cp_writer, self.config.cp_report_period_seconds)
            self._cmg_loggers.append(cp_logger)
            self._tasks.append(asyncio.create_task(cp_logger.run(), name="cp-report"))
        self._tasks.append(asyncio.create_task(self._expire_faults(), name="fault-expiry"))
        self.write_manifest()

    async def _expire_faults(self) -> None:
        """Faults expire on read; reading once a second makes certificate-level faults end on time too."""
        while True:
            await asyncio.sleep(1.0)
            self.faults.purge()

    async def stop(self) -> None:
        """Stop serving, write the last CMGService.log lines, and close the database and the logs."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._stop_channels()
        if self.group is not None:
            await self.group.stop()
        for cmg_logger in self._cmg_loggers:
            cmg_logger.flush()
        for upstream in self._upstreams:
            await upstream.close()
        if self._jwks_session is not None:
            await self._jwks_session.close()
        self.db.close()
        self.logs.close()
        self.state_lock.release()

    # --------------------------------------------------------------- manifest
    def url(self, name: str) -> str:
        return self.listeners[name].url

    def manifest(self) -> SiteManifest:
        """What a script needs to find every part of the running site."""
        config = self.config
        control = self.url("control")
        role_id = config.role_id
        tenant = config.default_tenant
        cmg_url = self.url("cmg") if "cmg" in self.listeners else self.links.get("cmg")
        cp_urls = [self.url(name) for name in self.listeners if name.startswith("cp")]
        return SiteManifest(
            cmg_url=cmg_url,
            cmg_enabled=cmg_url is not None,
            roles=tuple(role for role in ROLES if role in self.roles),
            links=tuple(RoleUrl(role, url) for role, url in self.links.items()),
            token_validation_url=f"{control}/validate",
            cmg_urls=tuple(self.url(name) for name in self.listeners if name.startswith("cmg")),
            cp_urls=tuple(cp_urls or [url for url in self.links.get("cp", "").split(",") if url]),
            mp_url=self.url("mp") if "mp" in self.listeners else self.links.get("mp"),
            server_auth_prefix=urlmap.server_auth_path(role_id, ""),
            mutual_auth_prefix=urlmap.mutual_auth_path(role_id, ""),
            role_id=role_id,
            ca_file=self.pki.ca_file,
            cmg_cert_file=self.pki.pki_dir / "cmg.pem",
            cmg_key_file=self.pki.pki_dir / "cmg.key",
            ccm_signing_cert_file=self.pki.pki_dir / "ccm-signing.pem",
            cmg_identity_cert_file=self.pki.pki_dir / "cmg-identity.pem",
            cmg_identity_key_file=self.pki.pki_dir / "cmg-identity.key",
            cp_hop=None if config.inprocess_hops or not self._local("cmg") else "channel" if self.channel_hubs else "https",
            channel_ports=tuple(hub.port for hub in self.channel_hubs.values()),
            cp_server_name="localhost",
            crl_url=self.crl_url,
            entra_url=self.entra_url,
            tenant_id=tenant.tenant_id,
            tenants=tuple(ManifestTenant(tenant_id=t.tenant_id, onboarded=t.onboarded, client_app_id=t.client_app_id,
                                         resource_uri=t.resource_uri) for t in config.tenants),
            client_app_id=tenant.client_app_id,
            resource_uri=tenant.resource_uri,
            site_code=config.site_code,
            hierarchy_id=config.hierarchy_id,
            time_scale=config.time_scale,
            ccm_token_lifetime_s=config.scaled(config.ccm_token_lifetime_site_seconds),
            token_leeway_s=config.scaled(config.token_leeway_site_seconds),
            policy_interval_s=config.scaled(config.policy_interval_site_seconds),
            faults_url=f"{control}/faults",
            faults_token=self.faults_token,
            metrics_urls=self._metrics_urls(control),
            log_dir=config.log_dir,
            db_path=config.db_path,
            state_dir=config.state_dir,
            pid=os.getpid(),
            storage_url=self.storage.base_url if self.storage is not None else None,
            bulk_token_file=self.bulk_token_file,
        )

    def _metrics_urls(self, control: str) -> tuple[RoleUrl, ...]:
        """Where each role served here is scraped (the storage with the CMG that runs it)."""
        served: list[str] = [role for role in ("cmg", "cp", "mp", "sts", "entra", "crl")
                  if role in self.roles or (role == "sts" and "mp" in self.roles)]
        if self.storage is not None:
            served.append(STORAGE_ROLE)
        return tuple(RoleUrl(role, f"{control}/metrics") for role in served)

    def write_manifest(self) -> Path:
        return self.manifest().write(self.manifest_path)
