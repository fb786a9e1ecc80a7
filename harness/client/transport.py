"""The httpx driver: runs a lifecycle over real HTTPS with the device's trust store and revocation checking.

A device trusts the site's root CA only when its profile says so. Unless it was installed with ``/NoCRLCheck`` it
reads the CRL distribution point from the CMG server certificate, downloads the CRL (keeping it until its
``nextUpdate``, as Windows does) and has OpenSSL check the CMG certificate against it (``VERIFY_CRL_CHECK_LEAF``).
TLS contexts are built once per trust state, CRL and client certificate, and shared by every device with the same.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cmg_protocol.clock import Clock, system_clock
from harness.client import outcome as oc
from harness.client.clientlogs import ClientLogs
from harness.client.device import DeviceProfile, Fleet, parse_traits
from harness.client.events import STEP_ENTRA_TOKEN, Done, Reply, Request, Response, SiteEndpoints, TransportError, Wait
from harness.client.lifecycle import Lifecycle
from harness.client.outcome import Outcome
from mock_site.manifest import SiteManifest

ClientCertProvider = Callable[[str], tuple[Path, Path]]
"""Gives the (certificate chain file, key file) of a device's PKI client-auth certificate, by NetBIOS name."""

# OpenSSL verification results (X509_V_ERR_*) and what a Windows client would have reported for them.
_REVOKED = {23}  # certificate revoked
# unable to get CRL, CRL signature failure / undecryptable, CRL not yet valid / expired, unable to get CRL issuer,
# different CRL scope, CRL path validation error
_REVOCATION_OFFLINE = {3, 6, 8, 11, 12, 15, 16, 33, 44, 54}


#: The User-Agent of ccmsetup's and CCMHTTP's GET requests (IIS logs show it as ``SMS+CCM+5.0``).
CCM_HTTP_USER_AGENT = "SMS CCM 5.0"


def wire_headers(request: Request) -> dict[str, str]:
    """The headers a real client sends with ``request``: its own, and on a GET to the site (never to Entra ID) the
    ``SMS CCM 5.0`` User-Agent of ccmsetup and CCMHTTP unless the request names its own."""
    headers = request.headers
    if request.method not in ("GET", "HEAD") or request.step == STEP_ENTRA_TOKEN:
        return headers
    if any(name.lower() == "user-agent" for name in headers):
        return headers
    return {**headers, "User-Agent": CCM_HTTP_USER_AGENT}


class TransportSetupError(ValueError):
    """A trust store or driver was given unusable files or settings; the message names them."""


class CrlUnavailable(Exception):
    """The CRL distribution point could not hand out a usable CRL."""


@dataclass(frozen=True, slots=True)
class Crl:
    """A downloaded CRL: its PEM bytes, a digest naming it, and when it goes stale."""

    digest: str
    pem: bytes
    next_update: float

    @classmethod
    def from_der(cls, der: bytes) -> Crl:
        """Read a DER CRL as a distribution point serves it (``CrlUnavailable`` if it is not one)."""
        try:
            crl = x509.load_der_x509_crl(der)
        except ValueError as exc:
            raise CrlUnavailable(f"not a DER CRL: {exc}") from None
        next_update = crl.next_update_utc
        return cls(digest=hashlib.sha256(der).hexdigest(), pem=crl.public_bytes(Encoding.PEM),
                   next_update=next_update.timestamp() if next_update is not None else 0.0)


def crl_distribution_point(cert: x509.Certificate) -> str | None:
    """The first HTTP(S) URL in the certificate's CRL Distribution Points extension, or None."""
    try:
        points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    except x509.ExtensionNotFound:
        return None
    for point in points:
        for name in point.full_name or ():
            if isinstance(name, x509.UniformResourceIdentifier) and name.value.startswith(("http://", "https://")):
                return name.value
    return None


class TrustStore:
    """The site root CA, the CDP URLs of servers, and the TLS contexts devices share (one per trust state)."""

    def __init__(self, ca_file: Path | str, *, client_certs: ClientCertProvider | None = None,
                 connect_timeout: float = 10.0) -> None:
        try:
            self._ca_pem = Path(ca_file).read_text("ascii")
        except (OSError, UnicodeDecodeError) as exc:
            raise TransportSetupError(f"site root CA {str(ca_file)!r} is not readable: {exc}") from None
        self._client_certs = client_certs
        self._connect_timeout = connect_timeout
        self._contexts: dict[tuple[bool, str | None, str | None], ssl.SSLContext] = {}
        self._cdp: dict[tuple[str, int], str | None] = {}
        self._crl_dir: Path | None = None
        self._lock = threading.Lock()

    def context(self, *, root_ca_present: bool, crl: Crl | None = None, client_cert: str | None = None) -> ssl.SSLContext:
        """The shared context for this trust state: with or without the root CA, a CRL, and a client certificate."""
        key = (root_ca_present, crl.digest if crl is not None else None, client_cert)
        ctx = self._contexts.get(key)
        if ctx is None:
            with self._lock:
                ctx = self._contexts.get(key)
                if ctx is None:
                    ctx = self._build(root_ca_present, crl, client_cert)
                    self._contexts[key] = ctx
        return ctx

    def entra_context(self) -> ssl.SSLContext:
        """Entra ID's certificate chains to a public root every device trusts; the site CA stands in for it."""
        return self.context(root_ca_present=True)

    @property
    def context_count(self) -> int:
        """How many distinct contexts exist (devices with the same trust state share one)."""
        return len(self._contexts)

    def _build(self, root_ca_present: bool, crl: Crl | None, client_cert: str | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies the chain and the host name
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if root_ca_present:
            ctx.load_verify_locations(cadata=self._ca_pem)
        if crl is not None:
            # OpenSSL loads CRLs only from files, so each distinct CRL is written once, named by its digest.
            ctx.load_verify_locations(cafile=str(self._crl_file(crl)))
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        if client_cert is not None:
            if self._client_certs is None:
                raise TransportSetupError(f"device {client_cert!r} needs a PKI client certificate, but the trust store "
                                          f"has no client certificate provider")
            cert_file, key_file = self._client_certs(client_cert)
            ctx.load_cert_chain(str(cert_file), str(key_file))
        return ctx

    def _crl_file(self, crl: Crl) -> Path:
        if self._crl_dir is None:
            self._crl_dir = Path(tempfile.mkdtemp(prefix="cmg-harness-crl-"))
        path = self._crl_dir / f"{crl.digest}.crl.pem"
        if not path.exists():
            path.write_bytes(crl.pem)
        return path

    def cdp_url(self, host: str, port: int) -> str | None:
        """The CRL distribution point named in the certificate the server at ``host:port`` presents (fetched once)."""
        key = (host, port)
        if key not in self._cdp:
            # Fetched without verification: this only reads the certificate; the handshake that follows verifies it.
            pem = ssl.get_server_certificate(key, timeout=self._connect_timeout)
            self._cdp[key] = crl_distribution_point(x509.load_pem_x509_certificate(pem.encode("ascii")))
        return self._cdp[key]

    def close(self) -> None:
        """Remove the CRL files written for the contexts."""
        if self._crl_dir is not None:
            shutil.rmtree(self._crl_dir, ignore_errors=True)
            self._crl_dir = None


@dataclass(slots=True)
class _DeviceTls:
    """What one device keeps between requests: the CRLs it downloaded, by distribution point."""

    crls: dict[str, Crl] = field(default_factory=dict)


class HttpxDriver:
    """Runs lifecycles over HTTPS with httpx, one request at a time; sleeps through Waits."""

    def __init__(self, trust: TrustStore, *, timeout: float = 30.0, clock: Clock = system_clock,
                 sleep: Callable[[float], None] = time.sleep, perf_counter: Callable[[], float] = time.perf_counter,
                 crl_client: httpx.Client | None = None) -> None:
        if not timeout > 0:
            raise TransportSetupError(f"timeout must be > 0 s, got {timeout!r}")
        self.trust = trust
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._perf = perf_counter
        self._clients: dict[int, httpx.Client] = {}
        # CRL distribution points are plain HTTP (the CRL is signed); a test may pass its own client to watch them.
        self._crl_client = crl_client or httpx.Client(timeout=timeout, follow_redirects=False)

    def run(self, life: Lifecycle, *, max_actions: int = 100_000) -> Outcome:
        """Play ``life`` to its end and return its outcome."""
        device = _DeviceTls()
        for _ in range(max_actions):
            action = life.next_request()
            if type(action) is Done:
                return action.outcome
            if type(action) is Wait:
                self._sleep(max(0.0, action.until - self._clock()))
                continue
            assert type(action) is Request
            life.feed(self.send(action, life.profile, device))
        raise RuntimeError(f"the life of {life.profile.netbios_name} did not end within {max_actions} actions")

    def send(self, request: Request, profile: DeviceProfile, device: _DeviceTls | None = None) -> Reply:
        """Send one request as ``profile``'s device would; TLS and network failures come back as TransportError."""
        device = device or _DeviceTls()
        started = self._perf()
        parts = urlsplit(request.url)
        host, port = parts.hostname or "", parts.port or 443
        try:
            if request.step == STEP_ENTRA_TOKEN:
                ctx = self.trust.entra_context()
            else:
                crl = None
                if profile.root_ca_present and not profile.nocrlcheck:
                    crl = self._crl_for(host, port, device)
                ctx = self.trust.context(root_ca_present=profile.root_ca_present, crl=crl,
                                         client_cert=profile.netbios_name if request.client_cert else None)
            response = self._client(ctx).request(request.method, request.url, headers=wire_headers(request),
                                                 content=request.body or None)
        except CrlUnavailable as exc:
            return TransportError(oc.TLS_REVOCATION_OFFLINE, str(exc), ms=self._ms(started))
        except (httpx.HTTPError, OSError) as exc:
            reason, detail = classify_exception(exc)
            return TransportError(reason, detail, ms=self._ms(started))
        status_text = response.headers.get("x-cmg-status-text") or response.reason_phrase
        return Response(response.status_code, response.content, status_text,
                        response.headers.get("content-type", ""), self._ms(started))

    def _crl_for(self, host: str, port: int, device: _DeviceTls) -> Crl | None:
        try:
            url = self.trust.cdp_url(host, port)
        except ssl.SSLError as exc:
            raise CrlUnavailable(f"could not read the certificate of {host}:{port}: {exc}") from None
        if url is None:
            raise CrlUnavailable(f"the certificate of {host}:{port} names no CRL distribution point")
        crl = device.crls.get(url)
        if crl is not None and self._clock() < crl.next_update:
            return crl
        try:
            answer = self._crl_client.get(url)
        except httpx.HTTPError as exc:
            raise CrlUnavailable(f"CRL distribution point {url} unreachable: {type(exc).__name__}: {exc}") from None
        if answer.status_code != 200:
            raise CrlUnavailable(f"CRL distribution point {url} answered HTTP {answer.status_code}")
        crl = Crl.from_der(answer.content)
        # Kept until nextUpdate; a CRL already past it is used once (and fails verification) but never kept.
        if self._clock() < crl.next_update:
            device.crls[url] = crl
        return crl

    def _client(self, ctx: ssl.SSLContext) -> httpx.Client:
        client = self._clients.get(id(ctx))
        if client is None:
            client = httpx.Client(verify=ctx, timeout=self.timeout, follow_redirects=False)
            self._clients[id(ctx)] = client
        return client

    def _ms(self, started: float) -> float:
        return (self._perf() - started) * 1000.0

    def close(self) -> None:
        """Close every connection pool."""
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        self._crl_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """The transport reason code of an httpx / socket failure, with a short detail."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        if isinstance(link, ssl.SSLCertVerificationError):
            code = link.verify_code
            detail = f"certificate verify failed: {link.verify_message} (X509 error {code})"
            if code in _REVOKED:
                return oc.TLS_REVOKED, detail
            if code in _REVOCATION_OFFLINE:
                return oc.TLS_REVOCATION_OFFLINE, detail
            return oc.TLS_INVALID_CA, detail
        link = link.__cause__ or link.__context__
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, (httpx.TimeoutException, socket.timeout, TimeoutError)):
        return oc.TIMEOUT, detail
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, ConnectionResetError)):
        return oc.RESET, detail
    return oc.CONNECT, detail


# --- one device against a running site (the CLI) ----------------------------------------------------------------------


def device_from_traits(manifest: SiteManifest, traits: str | Mapping[str, object] | DeviceProfile, *,
                       seed: int) -> DeviceProfile:
    """The CLI's device: device 0 of a fleet seeded with ``seed`` in the manifest's tenant, with ``traits`` applied.

    ``traits`` is ``--profile`` text, the fields :func:`parse_traits` made of it, or a ready profile.
    """
    if isinstance(traits, DeviceProfile):
        return traits
    device = Fleet(seed, tenant_ids=[manifest.tenant_id]).device(0)
    fields = parse_traits(traits) if isinstance(traits, str) else dict(traits)
    return device.with_traits(**fields)


def site_client_certs(manifest: SiteManifest) -> ClientCertProvider:
    """Device certificates issued by the site's CA (enrolment is out of band: the harness runs beside the site)."""
    from mock_site.pki import SitePki

    state_dir = manifest.state_dir
    pki: list[SitePki] = []

    def provide(name: str) -> tuple[Path, Path]:
        if not pki:
            pki.append(SitePki.load_or_create(state_dir / "pki", clock=system_clock))
        bundle = pki[0].device_client_cert(name)
        assert bundle.cert_path is not None and bundle.key_path is not None
        return bundle.cert_path, bundle.key_path

    return provide


def run_client(manifest: SiteManifest | Mapping[str, Any], profile: str | Mapping[str, object] | DeviceProfile = "",
               *, seed: int = 1, polls: int = 1, log_dir: Path | str | None = None,
               client_certs: ClientCertProvider | None = None, timeout: float = 30.0,
               clock: Clock = system_clock) -> Outcome:
    """Run one device's whole life against the running site described by ``manifest`` and return its outcome.

    (A decoded ``site.json`` mapping is still taken, and checked as :class:`SiteManifest` reads one.)
    """
    manifest = SiteManifest.coerce(manifest)
    site = SiteEndpoints.from_manifest(manifest)
    device = device_from_traits(manifest, profile, seed=seed)
    trust = TrustStore(manifest.ca_file, client_certs=client_certs or site_client_certs(manifest))
    logs = None
    if log_dir is not None:
        skew = device.clock_skew
        logs = ClientLogs(Path(log_dir), clock=lambda: clock() + skew)
    life = Lifecycle(device, site, clock=clock, rng=random.Random(seed), log=logs, polls=polls)
    try:
        with HttpxDriver(trust, timeout=timeout, clock=clock) as driver:
            return driver.run(life)
    finally:
        trust.close()
        if logs is not None:
            logs.close()


#: (host, port) by the scheme and authority they were read from: a fleet talks to a handful of servers, and splitting
#: every request's URL again cost more than the rest of choosing its TLS context. Bounded (emptied when full).
_HOST_PORTS: dict[str, tuple[str, int]] = {}
_HOST_PORTS_SIZE = 256


def host_port(url: str) -> tuple[str, int]:
    """The host and port (443 when none is named) of an absolute URL."""
    scheme, _, rest = url.partition("://")
    origin = scheme + "://" + rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    found = _HOST_PORTS.get(origin)
    if found is None:
        parts = urlsplit(origin)
        found = (parts.hostname or "", parts.port or 443)
        if len(_HOST_PORTS) >= _HOST_PORTS_SIZE:
            _HOST_PORTS.clear()
        _HOST_PORTS[origin] = found
    return found
