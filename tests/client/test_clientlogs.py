"""The client's CMTrace log files."""

from __future__ import annotations

import pytest

from cmg_protocol.clock import FakeClock
from cmg_protocol.logformat import parse_cmtrace_line
from harness.client.clientlogs import (
    CCMSETUP,
    CLIENT_LOG_FILES,
    ERROR,
    ClientLogError,
    ClientLogs,
    MemoryLog,
    log_time,
)


def test_lines_go_to_the_named_file_in_cmtrace_format(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Each line is a CMTrace entry with the file's component, the clock's time and the type."""
    clock = FakeClock(1_593_012_706.376)  # 06-24-2020 15:31:46.376 UTC
    with ClientLogs(tmp_path, clock=clock) as logs:
        logs.write(CCMSETUP, "Getting AAD info from CMG 'CMG.CLOUDAPP.NET'")
        logs.write(CCMSETUP, "Failed to get AAD token..", ERROR)
    lines = (tmp_path / "ccmsetup.log").read_text().splitlines()
    first, second = (parse_cmtrace_line(line) for line in lines)
    assert first.text == "Getting AAD info from CMG 'CMG.CLOUDAPP.NET'" and first.component == "ccmsetup"
    assert first.when.strftime("%m-%d-%Y %H:%M:%S") == "06-24-2020 15:31:46"
    assert (first.type, second.type) == (1, 3)


def test_files_are_opened_only_when_written(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A device that never registers has no ClientIDManagerStartup.log."""
    with ClientLogs(tmp_path, clock=FakeClock()) as logs:
        logs.write(CCMSETUP, "x")
    assert [path.name for path in tmp_path.iterdir()] == ["ccmsetup.log"]


@pytest.mark.parametrize("log", [lambda tmp: ClientLogs(tmp, clock=FakeClock()), lambda tmp: MemoryLog()])
def test_unknown_log_files_are_refused(tmp_path, log) -> None:  # type: ignore[no-untyped-def]
    """The client writes the walk-through's five logs and nothing else."""
    with pytest.raises(ClientLogError, match="CCM_STS.log"):
        log(tmp_path).write("CCM_STS.log", "x")


def test_the_client_writes_the_five_walkthrough_logs() -> None:
    """ccmsetup, ADALOperationProvider, ClientIDManagerStartup, CcmMessaging and LocationServices."""
    assert sorted(CLIENT_LOG_FILES) == ["ADALOperationProvider.log", "CcmMessaging.log", "ClientIDManagerStartup.log",
                                        "LocationServices.log", "ccmsetup.log"]


def test_token_expiry_is_printed_like_the_walkthrough() -> None:
    """Expiry times read MM/DD/YYYY HH:MM:SS."""
    assert log_time(1_593_073_775) == "06/25/2020 08:29:35"
