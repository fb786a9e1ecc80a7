"""The mock ConfigMgr site: CMG, CMG connection point, management point with CCM_STS, Entra ID and the CRL distribution
point, each an ASGI app over real TLS on loopback. Import from here; the modules behind it are the implementation.

Names load on first use, so ``import mock_site.manifest`` (say) costs the manifest alone, not the servers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "CATALOGUE": "mock_site.faults",
    "Clock": "cmg_protocol.clock",
    "ConfigError": "mock_site.config",
    "ConnectionLimits": "mock_site.limits",
    "FakeClock": "cmg_protocol.clock",
    "FaultError": "mock_site.faults",
    "FaultRegistry": "mock_site.faults",
    "MANIFEST_NAME": "mock_site.manifest",
    "ManifestError": "mock_site.manifest",
    "ROLES": "mock_site.site",
    "RunningSite": "mock_site.testing",
    "Site": "mock_site.site",
    "SiteClient": "mock_site.testing",
    "SiteConfig": "mock_site.config",
    "SiteManifest": "mock_site.manifest",
    "SiteStateError": "mock_site.state_dir",
    "TenantConfig": "mock_site.config",
    "running_site": "mock_site.testing",
    "system_clock": "cmg_protocol.clock",
}

__all__ = [
    "CATALOGUE",
    "MANIFEST_NAME",
    "ROLES",
    "Clock",
    "ConfigError",
    "ConnectionLimits",
    "FakeClock",
    "FaultError",
    "FaultRegistry",
    "ManifestError",
    "RunningSite",
    "Site",
    "SiteClient",
    "SiteConfig",
    "SiteManifest",
    "SiteStateError",
    "TenantConfig",
    "running_site",
    "system_clock",
]


def __getattr__(name: str) -> Any:
    try:
        module_name = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mock_site' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
