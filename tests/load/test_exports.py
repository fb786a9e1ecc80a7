"""``harness.load``'s public names, and that importing it leaves Locust (and its gevent patching) out."""

from __future__ import annotations

import subprocess
import sys

import harness.load


def test_all_is_sorted_and_complete() -> None:
    """``__all__`` lists every public name once, in order."""
    assert harness.load.__all__ == sorted(set(harness.load.__all__))
    assert "install" in harness.load.__all__ and "LifecycleUser" in harness.load.__all__


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_importing_harness_and_its_pure_load_modules_does_not_import_locust() -> None:
    """The site, the CLI and tests import harness.load freely: Locust stays out until a Locust name is used."""
    modules = ["harness", "harness.cli", "harness.load", "harness.load.context", "harness.fleet.driver",
               "harness.load.headless", "harness.plans.users", "harness.fleet.scheduler", "harness.fleet.seeded",
               "harness.fleet.tally", "harness.chaos.timeline", "harness.chaos.verdictbook", "harness.chaos.recovery",
               "harness.chaos.summary", "harness.chaos.watch", "harness.load.faultpanel"]
    code = ("import sys\n" + "".join(f"import {name}\n" for name in modules)
            + "import harness.load as load\nload.RunPlan, load.LoadOptions\n"
            + "print(sorted(m for m in ('locust', 'gevent') if m in sys.modules))")
    assert _python(code) == "[]"


def test_every_exported_name_resolves() -> None:
    """Each name in __all__ imports (in a fresh process: the Locust ones patch it with gevent)."""
    code = "import harness.load as load\nprint(all(getattr(load, name) is not None for name in load.__all__))"
    assert _python(code) == "True"
