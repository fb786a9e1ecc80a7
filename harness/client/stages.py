"""The lifecycle stages a load run times as a whole, by the names they carry in Locust's statistics and in results.

The load users time each stage (``harness.fleet.driver``), gate files select them (``stage:token renewal``), the
capacity report leaves them out of HTTP figures, and recovery counts them apart: all of them read these names.
"""

from __future__ import annotations

#: Locust ``request_type`` of the entries that time a whole lifecycle stage (not an HTTP request).
LIFECYCLE_REQUEST_TYPE = "LIFECYCLE"

#: Install and registration of a device, up to the client id the site hands out.
INSTALL_REGISTER = "install+register"
#: One policy cycle: location request, policy assignments, policy bodies.
POLICY_CYCLE = "policy cycle"
#: One CCM token renewal at CCM_STS.
TOKEN_RENEWAL = "token renewal"

#: Every stage, in the order a device first reaches it.
STAGES: tuple[str, ...] = (INSTALL_REGISTER, POLICY_CYCLE, TOKEN_RENEWAL)
