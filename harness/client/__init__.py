"""The simulated ConfigMgr client: device profiles, the sans-I/O lifecycle, its outcomes, logs and the httpx driver."""

from __future__ import annotations

from harness.client.clientlogs import CLIENT_LOG_FILES, ClientLog, ClientLogError, ClientLogs, MemoryLog
from harness.client.device import (
    WAM_BEHAVIOURS,
    DeviceProfile,
    Fleet,
    FleetMix,
    ProfileError,
    SmsSigningIdentity,
    parse_traits,
)
from harness.client.events import (
    Action,
    Done,
    LifecycleError,
    Reply,
    Request,
    Response,
    SiteEndpoints,
    TransportError,
    Wait,
    classify,
)
from harness.client.lifecycle import Lifecycle
from harness.client.outcome import REASONS, Outcome, OutcomeError, TrailEntry, format_step_table, http_reason
from harness.client.transport import (
    Crl,
    HttpxDriver,
    TransportSetupError,
    TrustStore,
    device_from_traits,
    run_client,
)

__all__ = [
    "CLIENT_LOG_FILES",
    "REASONS",
    "WAM_BEHAVIOURS",
    "Action",
    "ClientLog",
    "ClientLogError",
    "ClientLogs",
    "Crl",
    "DeviceProfile",
    "Done",
    "Fleet",
    "FleetMix",
    "HttpxDriver",
    "Lifecycle",
    "LifecycleError",
    "MemoryLog",
    "Outcome",
    "OutcomeError",
    "ProfileError",
    "Reply",
    "Request",
    "Response",
    "SiteEndpoints",
    "SmsSigningIdentity",
    "TrailEntry",
    "TransportError",
    "TransportSetupError",
    "TrustStore",
    "Wait",
    "classify",
    "device_from_traits",
    "format_step_table",
    "http_reason",
    "parse_traits",
    "run_client",
]
