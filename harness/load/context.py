"""What every Locust user of one process shares: the run's options, the site, the fleet, the trust store and the tally.

Built once per test start in each Locust process (no Locust import here, so it is tested in-process): options come
from Locust's parsed options, the site from its manifest (``site.json``), and every device of the process shares the
TLS contexts of one :class:`TrustStore`, as docs/measurements.md demands. A chaos schedule (``--chaos``) is read and checked
here too: its device shares join the fleet mix, its timed faults are for the master to switch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from harness.chaos.schedule import Schedule, ScheduleError, load_schedule
from harness.chaos.timeline import FaultTimeline
from harness.chaos.verdicts import VerdictSettings
from harness.client.device import Fleet, FleetMix
from harness.client.events import SiteEndpoints
from harness.client.transport import Crl, TrustStore, crl_distribution_point
from harness.defaults import DEFAULT_DEVICES_PER_USER, DEFAULT_SITE
from harness.fleet.tally import OutcomeTally
from harness.load.open_model import OpenModelError, open_model_from, poll_interval_seconds
from mock_site.manifest import ManifestError, SiteManifest


class LoadOptionError(ValueError):
    """A load option or the site manifest it names is unusable; the message names the bad value."""


@dataclass(frozen=True, slots=True)
class LoadOptions:
    """The cmg-harness options of a Locust run (``--site``, ``--fleet-mix``, ``--fleet-seed``, ...), checked."""

    site: Path = Path(DEFAULT_SITE)
    fleet_mix: FleetMix = field(default_factory=FleetMix)
    fleet_seed: int = 1
    devices_per_user: int = DEFAULT_DEVICES_PER_USER
    time_scale: float = 0.0  # informational: the site's own time scale decides
    results_dir: Path | None = None
    fleet_workers: int = 1
    chaos: Path | None = None
    schedule: Schedule | None = None
    ca_file: Path | None = None
    #: Locust's parsed options as given, for the option groups read where they are used (the open model).
    parsed: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def from_namespace(cls, options: Any) -> LoadOptions:
        """Read and check the options from Locust's parsed options (an argparse namespace)."""
        mix_text = str(getattr(options, "fleet_mix", "") or "")
        try:
            mix = FleetMix.parse(mix_text)
        except ValueError as error:
            raise LoadOptionError(f"--fleet-mix {mix_text!r}: {error}") from None
        devices = _whole("--devices-per-user", getattr(options, "devices_per_user", DEFAULT_DEVICES_PER_USER), 1)
        workers = _whole("--fleet-workers", getattr(options, "fleet_workers", 1), 1)
        seed = _whole("--fleet-seed", getattr(options, "fleet_seed", 1), None)
        scale = getattr(options, "time_scale", 0.0) or 0.0
        try:
            scale = float(scale)
        except (TypeError, ValueError):
            raise LoadOptionError(f"--time-scale must be a number, got {scale!r}") from None
        if not math.isfinite(scale) or scale < 0:
            raise LoadOptionError(f"--time-scale must be >= 0 (0: take the site's), got {scale!r}")
        results = getattr(options, "results_dir", "") or ""
        chaos_text = str(getattr(options, "chaos", "") or "")
        schedule = None
        if chaos_text:
            try:
                schedule = load_schedule(Path(chaos_text))
                mix = schedule.fleet_mix(mix)  # the schedule's device shares join (and win over) --fleet-mix
            except (ScheduleError, ValueError) as error:
                raise LoadOptionError(f"--chaos: {error}") from None
        try:  # checked now, so a bad open-model option stops a headless run at once; built with the site's numbers
            open_model_from(options, time_scale=1.0, site_poll_interval_s=1.0)
        except OpenModelError as error:
            raise LoadOptionError(str(error)) from None
        ca_text = str(getattr(options, "ca_file", "") or "")
        if ca_text and not Path(ca_text).is_file():
            raise LoadOptionError(f"--ca-file {ca_text!r}: no such file")
        return cls(site=Path(str(getattr(options, "site", DEFAULT_SITE) or DEFAULT_SITE)), fleet_mix=mix,
                   fleet_seed=seed, devices_per_user=devices, time_scale=scale,
                   results_dir=Path(str(results)) if results else None, fleet_workers=workers,
                   chaos=Path(chaos_text) if chaos_text else None, schedule=schedule,
                   ca_file=Path(ca_text) if ca_text else None, parsed=options)


def _whole(name: str, value: Any, low: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise LoadOptionError(f"{name} must be a whole number, got {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise LoadOptionError(f"{name} must be a whole number, got {value!r}") from None
    if low is not None and number < low:
        raise LoadOptionError(f"{name} must be >= {low}, got {value!r}")
    return number


def load_site_manifest(path: Path) -> SiteManifest:
    """The site manifest at ``path``, refused with its path named when missing or incomplete."""
    try:
        return SiteManifest.read(path)
    except ManifestError as error:
        raise LoadOptionError(f"--site: {error}") from None


class CrlCache:
    """One :class:`Crl` object per distinct CRL in the process, so 100,000 devices holding a CRL share one copy."""

    def __init__(self) -> None:
        self._by_digest: dict[str, Crl] = {}

    def intern(self, crl: Crl) -> Crl:
        """The process's copy of ``crl``."""
        return self._by_digest.setdefault(crl.digest, crl)

    def read(self, der: bytes) -> Crl:
        """The process's copy of the CRL in ``der``, parsed only the first time these bytes are seen (every device
        downloads the same CRL; its digest names the bytes, as :meth:`Crl.from_der` computes it)."""
        crl = self._by_digest.get(hashlib.sha256(der).hexdigest())
        return crl if crl is not None else self.intern(Crl.from_der(der))

    def __len__(self) -> int:
        return len(self._by_digest)


class RunContext:
    """The shared state of one Locust process for one test: options, site, fleet, trust, tally, fault timeline."""

    def __init__(self, options: LoadOptions, manifest: SiteManifest, *, worker_index: int = 0,
                 tally: OutcomeTally | None = None, cmg_url: str | None = None) -> None:
        self.options = options
        self.manifest = manifest
        try:
            # A host given to Locust (a CMG-style proxy under test) replaces the site's own CMG.
            self.endpoints = SiteEndpoints.from_manifest(manifest.replace(cmg_url=cmg_url or manifest.cmg_url))
        except ValueError as error:
            raise LoadOptionError(f"--site {str(options.site)!r}: {error}") from None
        tenants = list(manifest.onboarded_tenant_ids)
        self.fleet = Fleet(options.fleet_seed, options.fleet_mix, tenants or [manifest.tenant_id])
        # --ca-file: the CMG-style proxy under test presents a certificate from its own CA. Entra ID and the CRL
        # distribution point remain the site's, trusted through the site CA.
        try:
            self.site_trust = TrustStore(manifest.ca_file, client_certs=_client_certs(manifest))
            self.trust = self.site_trust if options.ca_file is None else \
                TrustStore(str(options.ca_file), client_certs=_client_certs(manifest))
        except ValueError as error:
            raise LoadOptionError(str(error)) from None
        self.timeline = FaultTimeline()
        parsed = options.parsed if options.parsed is not None else object()
        try:
            site_interval = manifest.policy_interval_s
            interval = poll_interval_seconds(parsed, time_scale=manifest.time_scale, site_poll_interval_s=site_interval)
            #: The run's open model (None: closed, each user plays its devices one after another).
            self.open_model = open_model_from(parsed, time_scale=manifest.time_scale, site_poll_interval_s=site_interval)
        except OpenModelError as error:
            raise LoadOptionError(str(error)) from None
        if interval != site_interval:
            self.endpoints = dataclasses.replace(self.endpoints, policy_interval_s=interval)
        self.verdict_settings = VerdictSettings.from_manifest(manifest)
        self.crls = CrlCache()
        self._cdp: dict[tuple[str, int], str | None] = {}
        self.tally = tally or OutcomeTally()
        self.worker_index = worker_index
        self._numbers = itertools.count()
        self._lock = threading.Lock()

    @classmethod
    def from_options(cls, parsed_options: Any, *, worker_index: int = 0, tally: OutcomeTally | None = None,
                     cmg_url: str | None = None) -> RunContext:
        """Check the options, read the manifest they name, and build the context."""
        options = LoadOptions.from_namespace(parsed_options)
        return cls(options, load_site_manifest(options.site), worker_index=worker_index, tally=tally,
                   cmg_url=cmg_url)

    @property
    def worker_count(self) -> int:
        """How many worker processes share the run (at least one more than this worker's index)."""
        return max(self.options.fleet_workers, self.worker_index + 1)

    def cdp_url(self, host: str, port: int, *, timeout: float = 10.0) -> str | None:
        """The CRL distribution point in the certificate the server at ``host:port`` presents (looked up once).

        Read without verification: only the certificate's CDP is wanted; the device's own handshake verifies it.
        (Done here rather than by ``TrustStore.cdp_url``: gevent's ``ssl.get_server_certificate`` has no timeout.)
        """
        key = (host, port)
        if key not in self._cdp:
            probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            probe.check_hostname = False
            probe.verify_mode = ssl.CERT_NONE
            with socket.create_connection(key, timeout=timeout) as raw, \
                    probe.wrap_socket(raw, server_hostname=host) as tls:
                der = tls.getpeercert(binary_form=True)
            self._cdp[key] = crl_distribution_point(x509.load_der_x509_certificate(der)) if der else None
        return self._cdp[key]

    def next_user_number(self) -> int:
        """A number no other user of this process has had in this test (0, 1, 2, ...)."""
        with self._lock:
            return next(self._numbers)

    def close(self) -> None:
        """Remove the trust stores' CRL files."""
        self.trust.close()
        self.site_trust.close()


def _client_certs(manifest: SiteManifest) -> Any:
    from harness.client.transport import site_client_certs

    return site_client_certs(manifest)
