"""Server-side faults: the catalogue, the registry of active faults, the middleware that applies them, the control API."""

from __future__ import annotations

from mock_site.faults.catalogue import (
    CATALOGUE,
    DEFAULT_DURATION,
    DEVICE_FAULTS,
    MAX_DURATION,
    PROXY_ROLES,
    ROLES,
    DeviceFault,
    FaultError,
    FaultSpec,
    ParamSpec,
    UnknownFault,
    catalogue_dict,
    get_spec,
)
from mock_site.faults.control import MAX_BODY_BYTES, control_app
from mock_site.faults.middleware import (
    MIDDLEWARE_FAULTS,
    ClientWindow,
    ConnectionResetFault,
    FaultMiddleware,
    client_id,
)
from mock_site.faults.registry import ActiveFault, FaultEvent, FaultRegistry

__all__ = [
    "CATALOGUE",
    "DEFAULT_DURATION",
    "DEVICE_FAULTS",
    "MAX_BODY_BYTES",
    "MAX_DURATION",
    "MIDDLEWARE_FAULTS",
    "PROXY_ROLES",
    "ROLES",
    "ActiveFault",
    "ClientWindow",
    "ConnectionResetFault",
    "DeviceFault",
    "FaultError",
    "FaultEvent",
    "FaultMiddleware",
    "FaultRegistry",
    "FaultSpec",
    "ParamSpec",
    "UnknownFault",
    "catalogue_dict",
    "client_id",
    "control_app",
    "get_spec",
]
