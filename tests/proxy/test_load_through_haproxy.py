"""Short Locust runs through HAProxy: the same verdicts as through nginx decide the exit."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.proxy import RenderedHaproxy
from harness.proxy.nginx import NAIVE, VALIDATING
from mock_site.testing import RunningSite, running_site
from tests.proxy.conftest import HaproxyStarter
from tests.proxy.test_load_through_nginx import EXPIRED_TOKENS, _run

pytestmark = [pytest.mark.haproxy, pytest.mark.slow]


@pytest.fixture(scope="module")
def load_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    with running_site(Path(tmp_path_factory.mktemp("site")), cmg_enabled=False, time_scale=60) as running:
        yield running


@pytest.fixture(scope="module")
def proxies(load_site: RunningSite, start_haproxy: HaproxyStarter) -> dict[str, RenderedHaproxy]:
    return {variant: start_haproxy(load_site.manifest, variant) for variant in (NAIVE, VALIDATING)}


def test_a_load_run_through_the_validating_haproxy_passes(load_site: RunningSite,
                                                          proxies: dict[str, RenderedHaproxy], tmp_path: Path) -> None:
    """Without faults every device installs through HAProxy, nothing is unexpected, and the run exits 0."""
    code, summary, output = _run(load_site, proxies[VALIDATING], tmp_path / "results")  # type: ignore[arg-type]
    assert code == 0, output
    assert summary["verdicts"]["unexpected"] == 0
    assert summary["devices"]["installed"] > 0


def test_a_naive_haproxy_under_token_faults_fails_the_run(load_site: RunningSite,
                                                          proxies: dict[str, RenderedHaproxy], tmp_path: Path) -> None:
    """Expired CCM tokens forwarded by the naive HAProxy reach the MP: unexpected mp.401 outcomes, non-zero exit."""
    schedule = tmp_path / "expired-tokens.yaml"
    schedule.write_text(EXPIRED_TOKENS)
    code, summary, output = _run(load_site, proxies[NAIVE], tmp_path / "results",  # type: ignore[arg-type]
                                 "--chaos", str(schedule))
    assert code != 0, output
    assert summary["verdicts"]["reasons"]["mp.401"].get("unexpected", 0) > 0


def test_a_validating_haproxy_under_token_faults_has_no_unexpected_outcome(
        load_site: RunningSite, proxies: dict[str, RenderedHaproxy], tmp_path: Path) -> None:
    """The same schedule behind the validating HAProxy: refused at the edge by jwt_verify and exp (cmg.401), exit 0."""
    schedule = tmp_path / "expired-tokens.yaml"
    schedule.write_text(EXPIRED_TOKENS)
    code, summary, output = _run(load_site, proxies[VALIDATING], tmp_path / "results",  # type: ignore[arg-type]
                                 "--chaos", str(schedule))
    assert code == 0, output
    assert summary["verdicts"]["unexpected"] == 0
    assert summary["verdicts"]["reasons"]["cmg.401"]["expected"] > 0
