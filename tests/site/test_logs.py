"""Site log files: CMTrace and SMS-trace lines, roll-over to ``.lo_``, and lines that survive a kill."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cmg_protocol.clock import FakeClock
from cmg_protocol.logfile import LogWriter, NullLogWriter, log_thread_id
from cmg_protocol.logformat import parse_cmtrace_line, parse_smstrace_line
from mock_site.logs import SiteLogs

T0 = 1_593_012_706.376  # 06-24-2020 15:31:46.376 UTC, the walk-through's CMGService.log time


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def lines_of(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize(("method", "type_"), [("info", 1), ("warning", 2), ("error", 3)])
def test_cmtrace_lines_carry_type_component_time_and_file(
    tmp_path: Path, clock: FakeClock, method: str, type_: int
) -> None:
    """Info, warning and error lines parse back as CMTrace entries of type 1, 2 and 3 with the writer's fields."""
    writer = LogWriter(tmp_path / "CCM_STS.log", style="cmtrace", component="CCM_STS", clock=clock)
    getattr(writer, method)("Incoming request URL: https://MP.MYCORP.COM/CCM_STS", file="sts.cs:42")
    writer.close()
    [line] = lines_of(writer.path)
    entry = parse_cmtrace_line(line)
    assert (entry.text, entry.component, entry.type, entry.file) == (
        "Incoming request URL: https://MP.MYCORP.COM/CCM_STS", "CCM_STS", type_, "sts.cs:42"
    )
    assert entry.when == datetime(2020, 6, 24, 15, 31, 46, 376000, tzinfo=UTC)
    assert entry.thread == log_thread_id()


def test_smstrace_lines_parse_back(tmp_path: Path, clock: FakeClock) -> None:
    """SMS-trace writers produce lines the SMS-trace parser reads back with component, time and thread."""
    writer = LogWriter(
        tmp_path / "SMS_CLOUD_PROXYCONNECTOR.log", style="smstrace", component="SMS_CLOUD_PROXYCONNECTOR", clock=clock
    )
    writer.warning("Switched to internal URL.")
    writer.close()
    entry = parse_smstrace_line(lines_of(writer.path)[0])
    assert (entry.text, entry.component, entry.thread) == (
        "Switched to internal URL.", "SMS_CLOUD_PROXYCONNECTOR", log_thread_id()
    )
    assert entry.when.timestamp() == pytest.approx(T0, abs=0.001)


@pytest.mark.parametrize("style", ["cmtrace", "smstrace"])
def test_a_line_break_in_a_message_stays_on_one_line(tmp_path: Path, clock: FakeClock, style: str) -> None:
    """A message holding line breaks is written escaped as one entry, so no one can forge a second entry."""
    writer = LogWriter(tmp_path / "x.log", style=style, component="C", clock=clock)  # type: ignore[arg-type]
    writer.info("first\r\nforged~~  $$<CMGService><01-01-2020 00:00:00.000+00><thread=1 (0x1)>")
    writer.close()
    [line] = lines_of(writer.path)
    parse = parse_cmtrace_line if style == "cmtrace" else parse_smstrace_line
    assert parse(line).text.startswith("first\\r\\nforged")


def test_a_full_log_rolls_over_to_lo_with_every_line_intact(tmp_path: Path, clock: FakeClock) -> None:
    """When the next line would pass max_bytes the file becomes ``.lo_``; no line is split or lost, none is too big."""
    writer = LogWriter(tmp_path / "MP_Policy.log", style="cmtrace", component="MP_PolicyManager", clock=clock,
                       max_bytes=2048)
    for i in range(20):
        writer.info(f"policy request {i:02d}")
    writer.close()
    history = tmp_path / "MP_Policy.lo_"
    assert history.exists()
    texts = [parse_cmtrace_line(line).text for path in (history, writer.path) for line in lines_of(path)]
    assert texts == [f"policy request {i:02d}" for i in range(20)]
    assert max(history.stat().st_size, writer.path.stat().st_size) <= 2048


def test_only_one_history_file_is_kept(tmp_path: Path, clock: FakeClock) -> None:
    """A second roll-over replaces the older ``.lo_``, as ConfigMgr keeps one history file."""
    writer = LogWriter(tmp_path / "CCM_STS.log", style="cmtrace", component="CCM_STS", clock=clock, max_bytes=1024)
    i = 0
    while not (tmp_path / "CCM_STS.lo_").exists():
        writer.info(f"first generation {i}")
        i += 1
    while "first generation" in (tmp_path / "CCM_STS.lo_").read_text():
        writer.info(f"second generation {i}")
        i += 1
    writer.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CCM_STS.lo_", "CCM_STS.log"]
    assert all("second generation" in line for line in lines_of(tmp_path / "CCM_STS.lo_"))


def test_a_reopened_log_appends_and_counts_what_is_there(tmp_path: Path, clock: FakeClock) -> None:
    """A writer opened on an existing log appends to it and rolls over by the file's real size."""
    path = tmp_path / "CCM_STS.log"
    first = LogWriter(path, style="cmtrace", component="CCM_STS", clock=clock, max_bytes=1024)
    first.info("before restart " + "x" * 500)
    first.close()
    second = LogWriter(path, style="cmtrace", component="CCM_STS", clock=clock, max_bytes=1024)
    second.info("after restart " + "y" * 500)
    second.close()
    assert parse_cmtrace_line(lines_of(tmp_path / "CCM_STS.lo_")[0]).text.startswith("before restart")
    assert parse_cmtrace_line(lines_of(path)[0]).text.startswith("after restart")


def test_lines_written_before_a_kill_are_in_the_file(tmp_path: Path) -> None:
    """Every line a writer returned from is on disk even when the process is killed with SIGKILL right after."""
    path = tmp_path / "MP_RegistrationManager.log"
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from cmg_protocol.logfile import LogWriter
        w = LogWriter(Path({str(path)!r}), style="cmtrace", component="MP_RegistrationManager", clock=lambda: 1.0)
        for i in range(50):
            w.info(f"Processing Registration request {{i}}")
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert [parse_cmtrace_line(line).text for line in lines_of(path)] == [
        f"Processing Registration request {i}" for i in range(50)
    ]


def test_lines_from_many_threads_are_never_interleaved(tmp_path: Path, clock: FakeClock) -> None:
    """Concurrent writers across roll-overs leave only whole, parseable lines and lose none."""
    writer = LogWriter(tmp_path / "CMGService.log", style="smstrace", component="CMGService", clock=clock,
                       max_bytes=200_000)

    def work(worker: int) -> None:
        for i in range(200):
            writer.info(f"worker {worker} line {i}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(work, w) for w in range(4)]:
            future.result()
    writer.close()
    texts = [parse_smstrace_line(line).text for line in lines_of(writer.path)]
    assert sorted(texts) == sorted(f"worker {w} line {i}" for w in range(4) for i in range(200))


def test_thread_ids_look_like_windows_ones_and_are_stable() -> None:
    """Thread ids are 4-5 digit multiples of 4, the same for one thread and spread across threads."""
    ids = {log_thread_id(ident) for ident in range(140_000_000_000_000, 140_000_000_000_000 + 64 * 4096, 4096)}
    assert all(1000 <= i <= 99_999 and i % 4 == 0 for i in ids)
    assert len(ids) > 32
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.extend([log_thread_id(), log_thread_id()]))
    thread.start()
    thread.join()
    assert seen[0] == seen[1]


def test_writing_to_a_closed_log_raises_naming_it(tmp_path: Path, clock: FakeClock) -> None:
    """A write after ``close`` fails loudly with the file's name rather than vanishing."""
    writer = LogWriter(tmp_path / "CCM_STS.log", style="cmtrace", component="CCM_STS", clock=clock)
    writer.close()
    writer.close()
    with pytest.raises(ValueError, match="CCM_STS.log"):
        writer.info("late")


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"style": "json"}, "json"),
        ({"max_bytes": 10}, "10"),
        ({"component": 'CCM"STS'}, 'CCM"STS'),
        ({"style": "smstrace", "component": "<CMG>"}, "<CMG>"),
        ({"component": ""}, "''"),
    ],
)
def test_bad_writer_settings_raise_naming_them(tmp_path: Path, clock: FakeClock, kwargs: dict, named: str) -> None:
    """An unknown style, a tiny size or a component the format cannot carry is refused by name."""
    settings = {"style": "cmtrace", "component": "CCM_STS", **kwargs}
    with pytest.raises(ValueError) as excinfo:
        LogWriter(tmp_path / "x.log", clock=clock, **settings)
    assert named in str(excinfo.value)


# ---- SiteLogs ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "style", "component"),
    [
        ("CCM_STS.log", "cmtrace", "CCM_STS"),
        ("MP_RegistrationManager.log", "cmtrace", "MP_RegistrationManager"),
        ("MP_Location.log", "cmtrace", "MP_LocationManager"),
        ("MP_Policy.log", "cmtrace", "MP_PolicyManager"),
        ("MP_GetAuth.log", "cmtrace", "MP_GetAuth_ISAPI"),
        ("CMGService.log", "smstrace", "CMGService"),
        ("CMGService_IN_1.log", "smstrace", "CMGService"),
        ("SMS_CLOUD_PROXYCONNECTOR.log", "smstrace", "SMS_CLOUD_PROXYCONNECTOR"),
        ("MP_Something.log", "cmtrace", "MP_Something"),
    ],
)
def test_site_logs_hand_out_the_style_and_component_of_each_file(
    tmp_path: Path, clock: FakeClock, name: str, style: str, component: str
) -> None:
    """Each site log gets the line style and component name ConfigMgr uses; unknown .log names get CMTrace."""
    logs = SiteLogs(tmp_path / "logs", clock=clock, max_bytes=250_000)
    logs.writer(name).info("hello")
    logs.close()
    line = lines_of(tmp_path / "logs" / name)[0]
    entry = parse_cmtrace_line(line) if style == "cmtrace" else parse_smstrace_line(line)
    assert (entry.component, entry.text) == (component, "hello")


def test_site_logs_hand_out_one_writer_per_file(tmp_path: Path, clock: FakeClock) -> None:
    """Asking twice for the same log gives the same writer, so its lines stay ordered and its size counted once."""
    logs = SiteLogs(tmp_path, clock=clock, max_bytes=250_000)
    assert logs.writer("CCM_STS.log") is logs.writer("CCM_STS.log")
    logs.close()


def test_site_logs_pass_their_size_limit_to_writers(tmp_path: Path, clock: FakeClock) -> None:
    """The configured roll-over size applies to every writer the site logs hand out."""
    logs = SiteLogs(tmp_path, clock=clock, max_bytes=4096)
    assert logs.writer("CCM_STS.log").max_bytes == 4096
    logs.close()


def test_disabled_site_logs_write_nothing(tmp_path: Path, clock: FakeClock) -> None:
    """With logging off, writers accept lines and no file is created."""
    logs = SiteLogs(tmp_path / "logs", clock=clock, max_bytes=250_000, enabled=False)
    writer = logs.writer("CCM_STS.log")
    writer.error("dropped")
    logs.close()
    assert isinstance(writer, NullLogWriter)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("name", ["../escape.log", "sub/dir.log", "notes.txt", ".log", "bad\nname.log"])
def test_site_logs_refuse_names_that_are_not_plain_log_files(tmp_path: Path, clock: FakeClock, name: str) -> None:
    """Only plain ``*.log`` file names inside the log folder are accepted; others are refused by name."""
    logs = SiteLogs(tmp_path, clock=clock, max_bytes=250_000)
    with pytest.raises(ValueError) as excinfo:
        logs.writer(name)
    assert repr(name) in str(excinfo.value)


def _write_lines_from_a_process(path: str, worker: int, lines: int, max_bytes: int) -> None:
    writer = LogWriter(Path(path), style="cmtrace", component="MP_Policy", clock=lambda: 1.0, max_bytes=max_bytes)
    writer.share_between_processes()
    for number in range(lines):
        writer.info(f"worker {worker} line {number:05d} " + "x" * 60)
    writer.close()


def test_processes_sharing_a_log_roll_it_over_together_without_losing_or_tearing_lines(tmp_path: Path) -> None:
    """Four processes append to one file across a roll-over: every line is whole and is in the log or its history, and
    neither file grows past the roll-over size (each process rolls over by the file's size, not by what it wrote)."""
    import multiprocessing

    path = tmp_path / "MP_Policy.log"
    max_bytes, workers, lines = 100_000, 4, 200  # ~200 bytes a line: 800 lines need one roll-over, never two
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=_write_lines_from_a_process, args=(str(path), w, lines, max_bytes))
                 for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    history = path.with_suffix(".lo_")
    text = history.read_text() + path.read_text()
    written = text.splitlines()
    assert all(line.startswith("<![LOG[worker ") and line.endswith(">") for line in written)
    seen = sorted(line.split("]LOG]!>")[0][len("<![LOG["):] for line in written)
    expected = sorted(f"worker {w} line {n:05d} " + "x" * 60 for w in range(workers) for n in range(lines))
    assert seen == expected
    assert path.stat().st_size <= max_bytes and history.stat().st_size <= max_bytes
