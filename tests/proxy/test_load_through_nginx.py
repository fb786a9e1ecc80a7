"""Short Locust runs through nginx (``cmg-harness run --site --target --ca-file --chaos``): the verdicts decide the exit."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.proxy import RenderedProxy
from harness.proxy.nginx import NAIVE, VALIDATING
from mock_site.testing import RunningSite, running_site
from tests.proxy.conftest import ProxyStarter

pytestmark = [pytest.mark.nginx, pytest.mark.slow]

# Installs sign and fetch content from storage: 5 s was tight for them on a busy machine.
RUN = ["--users", "4", "--devices-per-user", "2", "--spawn-rate", "4", "--duration", "10s"]
# CCM_STS issues already-expired CCM tokens for the first 4 s: every device installing then meets an invalid token.
EXPIRED_TOKENS = """\
faults:
  - fault: ccm_token_expired
    role: sts
    start: 0
    duration: 4
"""


@pytest.fixture(scope="module")
def load_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSite]:
    with running_site(Path(tmp_path_factory.mktemp("site")), cmg_enabled=False, time_scale=60) as running:
        yield running


@pytest.fixture(scope="module")
def proxies(load_site: RunningSite, start_proxy: ProxyStarter) -> dict[str, RenderedProxy]:
    return {variant: start_proxy(load_site.manifest, variant) for variant in (NAIVE, VALIDATING)}


def _run(site: RunningSite, proxy: RenderedProxy, out: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    """``cmg-harness run`` against the running site through ``proxy``; exit code, summary.json and output."""
    site.reset_faults()
    result = subprocess.run([sys.executable, "-m", "harness.cli", "run", *RUN, "--site", str(site.manifest_path),
                             "--target", proxy.url, "--ca-file", site.manifest.ca_file, "--out", str(out), *extra],
                            capture_output=True, text=True, timeout=60, check=False)
    summary = json.loads((out / "summary.json").read_text())
    return result.returncode, summary, result.stdout + result.stderr


def test_a_load_run_through_the_validating_proxy_passes(load_site: RunningSite, proxies: dict[str, RenderedProxy],
                                                        tmp_path: Path) -> None:
    """Without faults every device installs through nginx, nothing is unexpected, and the run exits 0."""
    code, summary, output = _run(load_site, proxies[VALIDATING], tmp_path / "results")
    assert code == 0, output
    assert summary["verdicts"]["unexpected"] == 0
    assert summary["devices"]["installed"] > 0


def test_a_naive_proxy_under_token_faults_fails_the_run(load_site: RunningSite, proxies: dict[str, RenderedProxy],
                                                        tmp_path: Path) -> None:
    """Expired CCM tokens forwarded by the naive proxy reach the MP: unexpected mp.401 outcomes, non-zero exit."""
    schedule = tmp_path / "expired-tokens.yaml"
    schedule.write_text(EXPIRED_TOKENS)
    code, summary, output = _run(load_site, proxies[NAIVE], tmp_path / "results", "--chaos", str(schedule))
    assert code != 0, output
    assert summary["verdicts"]["unexpected"] > 0
    assert summary["verdicts"]["reasons"]["mp.401"].get("unexpected", 0) > 0


def test_a_validating_proxy_under_token_faults_has_no_unexpected_outcome(
        load_site: RunningSite, proxies: dict[str, RenderedProxy], tmp_path: Path) -> None:
    """The same schedule behind the validating proxy: refused at the edge (cmg.401), all expected, exit 0."""
    schedule = tmp_path / "expired-tokens.yaml"
    schedule.write_text(EXPIRED_TOKENS)
    code, summary, output = _run(load_site, proxies[VALIDATING], tmp_path / "results", "--chaos", str(schedule))
    assert code == 0, output
    assert summary["verdicts"]["unexpected"] == 0
    assert summary["verdicts"]["reasons"]["cmg.401"]["expected"] > 0
