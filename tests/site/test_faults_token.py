"""The fault API's bearer token file is readable by its owner only, from the moment it exists."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mock_site.config import SiteConfig
from mock_site.site import Site
from mock_site.state_dir import FAULTS_TOKEN_NAME


@pytest.fixture
def no_umask() -> Iterator[None]:
    """umask 0: a file gets exactly the mode it is created with, so a lax creation mode would show."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_token_file_is_0600_from_its_creation(tmp_path: Path, no_umask: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With umask 0 the token file never has another mode than 0600, not even before a chmod."""
    token_path = tmp_path / FAULTS_TOKEN_NAME
    seen: list[int] = []
    real_chmod, real_open = os.chmod, os.open

    def spy_chmod(path: object, mode: int, *args: object, **kwargs: object) -> None:
        if Path(str(path)) == token_path and token_path.exists():
            seen.append(_mode(token_path))  # the mode the file had until now
        real_chmod(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    def spy_open(path: object, flags: int, mode: int = 0o777, *args: object, **kwargs: object) -> int:
        fd = real_open(path, flags, mode, *args, **kwargs)  # type: ignore[arg-type]
        if Path(str(path)) == token_path:
            seen.append(_mode(token_path))
        return fd

    monkeypatch.setattr(os, "chmod", spy_chmod)
    monkeypatch.setattr(os, "open", spy_open)
    site = Site(SiteConfig(state_dir=tmp_path), logs_enabled=False)
    try:
        monkeypatch.undo()
        assert _mode(token_path) == 0o600
        assert seen and set(seen) == {0o600}
        assert token_path.read_text() == site.faults_token
    finally:
        site.db.close()


def test_an_existing_token_is_kept_and_its_lax_mode_tightened(tmp_path: Path, no_umask: None) -> None:
    """A token file an older version left readable by others keeps its token and becomes 0600."""
    token_path = tmp_path / FAULTS_TOKEN_NAME
    token_path.write_text("kept-token\n")
    token_path.chmod(0o644)
    site = Site(SiteConfig(state_dir=tmp_path), logs_enabled=False)
    try:
        assert site.faults_token == "kept-token"
        assert _mode(token_path) == 0o600
    finally:
        site.db.close()


def test_an_empty_token_file_is_replaced_by_a_0600_one(tmp_path: Path, no_umask: None) -> None:
    token_path = tmp_path / FAULTS_TOKEN_NAME
    token_path.write_text("")
    token_path.chmod(0o666)
    site = Site(SiteConfig(state_dir=tmp_path), logs_enabled=False)
    try:
        assert len(site.faults_token) >= 32
        assert _mode(token_path) == 0o600
        assert token_path.read_text() == site.faults_token
    finally:
        site.db.close()
