"""SiteConfig's fields say their unit, and site time scales while real time does not."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mock_site.config import ConfigError, SiteConfig

UNITLESS = {"time_scale"}  # a factor, not a quantity


def test_every_duration_and_size_field_names_its_unit() -> None:
    """Each float field but the time scale is a duration named ``*_seconds`` (real) or ``*_site_seconds`` (scaled)."""
    floats = [f.name for f in dataclasses.fields(SiteConfig) if f.type == "float" and f.name not in UNITLESS]
    assert floats and all(name.endswith("_seconds") for name in floats), floats


def test_site_seconds_scale_into_real_seconds() -> None:
    """``scaled`` turns a ``*_site_seconds`` value into real seconds under the time scale."""
    config = SiteConfig(state_dir=Path("/nonexistent"), time_scale=3600)
    assert config.scaled(config.ccm_token_lifetime_site_seconds) == 8.0


def test_a_log_period_of_zero_is_refused() -> None:
    """The CMGService.log period is real seconds and must be positive; the error names it."""
    with pytest.raises(ConfigError, match="CMGService.log period must be > 0 s, got 0"):
        SiteConfig(state_dir=Path("/nonexistent"), cmgservice_log_period_seconds=0)
