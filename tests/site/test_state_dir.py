"""The site's state directory: one site per directory and role set (a lock naming its holder), a private fault token."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest

from mock_site import state_dir as state_dir_module
from mock_site.config import SiteConfig
from mock_site.site import Site
from mock_site.state_dir import SiteStateError, StateDirLock, load_or_create_token


def test_a_second_lock_on_the_same_file_is_refused_naming_the_pid_that_holds_it(tmp_path: Path) -> None:
    first = StateDirLock(tmp_path / ".lock")
    first.acquire()
    try:
        assert (tmp_path / ".lock").read_text().strip() == str(os.getpid())
        with pytest.raises(SiteStateError, match=rf"in use by the site with PID {os.getpid()} \(lock \.lock\)"):
            StateDirLock(tmp_path / ".lock").acquire()
    finally:
        first.release()
    again = StateDirLock(tmp_path / ".lock")
    again.acquire()  # released: free for the next site
    again.release()


def test_locks_of_different_role_sets_do_not_conflict(tmp_path: Path) -> None:
    back, front = StateDirLock(tmp_path / ".lock-crl-entra"), StateDirLock(tmp_path / ".lock-cmg")
    back.acquire()
    front.acquire()
    assert back.held and front.held
    back.release()
    front.release()


def test_a_site_holds_its_state_dir_until_it_stops(tmp_path: Path) -> None:
    """A second Site on the same directory is refused before it touches anything; after stop() the directory is free."""
    config = SiteConfig(state_dir=tmp_path, inprocess_hops=True)
    site = Site(config, logs_enabled=False)
    token = (tmp_path / "faults.token").read_text()
    with pytest.raises(SiteStateError, match=f"PID {os.getpid()}"):
        Site(config, logs_enabled=False)
    assert (tmp_path / "faults.token").read_text() == token
    # A site of another role set shares the directory (split roles write site-<roles>.json).
    other = Site(config, logs_enabled=False, roles=("crl", "entra"))
    assert other.state_lock.path.name == ".lock-crl-entra"
    asyncio.run(site.stop())
    asyncio.run(other.stop())
    asyncio.run(Site(config, logs_enabled=False).stop())


def test_the_fault_token_is_created_0600_without_a_later_chmod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Created with its final mode: with chmod doing nothing and a umask that lets everyone read, it is still 0600."""
    monkeypatch.setattr(state_dir_module.os, "chmod", lambda *args, **kwargs: None)
    old_umask = os.umask(0)
    try:
        token = load_or_create_token(tmp_path)
    finally:
        os.umask(old_umask)
    path = tmp_path / "faults.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == token and len(token) >= 32


def test_an_existing_fault_token_is_kept_and_an_empty_one_replaced(tmp_path: Path) -> None:
    """A token already there is kept; an empty file (a crash mid-write) is replaced by a fresh token, 0600."""
    (tmp_path / "faults.token").write_text("kept-token\n")
    assert load_or_create_token(tmp_path) == "kept-token"
    (tmp_path / "faults.token").write_text("")
    fresh = load_or_create_token(tmp_path)
    assert fresh and stat.S_IMODE((tmp_path / "faults.token").stat().st_mode) == 0o600
