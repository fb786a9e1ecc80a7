"""The mock ConfigMgr site: CMG, CMG connection point, management point with CCM_STS, Entra ID and the CRL distribution
point, each an ASGI app over real TLS on loopback. Import from here; the modules behind it are the implementation."""

from __future__ import annotations

from mock_site.clock import Clock, FakeClock, system_clock
from mock_site.config import ConfigError, SiteConfig, TenantConfig
from mock_site.faults import CATALOGUE, FaultError, FaultRegistry
from mock_site.site import MANIFEST_NAME, ROLES, Site, SiteStateError
from mock_site.testing import RunningSite, SiteClient, running_site

__all__ = [
    "CATALOGUE",
    "MANIFEST_NAME",
    "ROLES",
    "Clock",
    "ConfigError",
    "FakeClock",
    "FaultError",
    "FaultRegistry",
    "RunningSite",
    "Site",
    "SiteClient",
    "SiteConfig",
    "SiteStateError",
    "TenantConfig",
    "running_site",
    "system_clock",
]
