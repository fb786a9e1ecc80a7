"""The baseline for benchmarks/locust_worker.py: Locust's FastHttpUser fetching the CMG's lightest endpoint
(AADAuthInfo, a small JSON answer) as fast as it can, with TLS verification on and one shared SSL context."""

from __future__ import annotations

import os
import ssl

import cpu_meter  # noqa: F401 - the benchmark's CPU and GC instrument (benchmarks/locustfiles)
from locust import FastHttpUser, task

from mock_site.manifest import SiteManifest

_MANIFEST = SiteManifest.read(os.environ["CMG_HARNESS_SITE"])  # read once at import
_CONTEXT = ssl.create_default_context(cafile=str(_MANIFEST.ca_file))
_PATH = f"/CCM_Proxy_ServerAuth/AADAuthInfo?TenantID={_MANIFEST.tenant_id}"


class TrivialUser(FastHttpUser):
    host = _MANIFEST.cmg_url
    insecure = False
    concurrency = 1

    def __init__(self, environment: object) -> None:
        self.ssl_context_factory = lambda: _CONTEXT
        super().__init__(environment)

    @task
    def aad_auth_info(self) -> None:
        self.client.get(_PATH, name="AADAuthInfo")
