"""Shared fixtures: a real mock site on loopback with real TLS (see mock_site.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_site.testing import RunningSite, SiteClient, running_site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    """One site per test module; faults are reset after every test that uses ``clean_site``."""
    with running_site(Path(tmp_path_factory.mktemp("site")), time_scale=60) as running:
        yield running


@pytest.fixture
def clean_site(site: RunningSite) -> Iterator[RunningSite]:
    site.reset_faults()
    yield site
    site.reset_faults()


@pytest.fixture
def site_client(clean_site: RunningSite) -> Iterator[SiteClient]:
    with SiteClient(clean_site.manifest) as client:
        yield client
