"""Shared fixtures: a real mock site on loopback with real TLS (see mock_site.testing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_site.testing import RunningSite, SiteClient, running_site

#: Where tests keep what a person looks at afterwards (browser screenshots): $CMG_TEST_ARTIFACTS, or
#: results/test-artifacts/ in the checkout (ignored by git; CI can publish it).
ARTIFACTS_DIR = Path(os.environ.get("CMG_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "results" /
                     "test-artifacts")


@pytest.fixture
def artifacts_dir() -> Path:
    """The directory test artifacts are kept in (created); each test names its files so they do not collide."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


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


def pytest_collection_finish(session: pytest.Session) -> None:
    """No test module may import Locust into the test process: it monkey-patches threads with gevent, and every later
    test that serves something in a thread would then hang. Locust-facing code is tested in subprocesses."""
    import sys

    if "locust" in sys.modules:
        raise pytest.UsageError("a test module imported Locust into the pytest process (gevent would patch threads "
                                "and later threaded servers would hang): import Locust-facing modules lazily or test "
                                "them in a subprocess")


@pytest.fixture(autouse=True)
def _locust_stays_out() -> Iterator[None]:
    """Fails the test that imported Locust into the pytest process, before later threaded servers hang on gevent."""
    yield
    import sys

    assert "locust" not in sys.modules, ("this test imported Locust into the pytest process (gevent patches threads): "
                                         "import Locust-facing code lazily or test it in a subprocess")
