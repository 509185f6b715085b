"""control/worker_processes.py: a worker's record, and knowing its process again (never a reused pid)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from control.settings import Settings
from control.worker_processes import (
    EXIT_UNKNOWN,
    THREAD_VARIABLES,
    AdoptedProcess,
    WorkerLaunch,
    WorkerRecord,
    adoptable,
    alive,
    exit_code_from,
    read_records,
    records_dir,
    start_time,
    terminate_recorded,
    thread_limits,
    write_record,
)
from streams.status import WorkerStatus
from streams.worker import EXIT_CANNOT_START, EXIT_DRAIN_INCOMPLETE, EXIT_OVER_MEMORY


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path)


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process standing in for a worker (one this test started, so it can reap it)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _record(worker_id: str, pid: int, started: int, deployment: str = "d1") -> WorkerRecord:
    launch = WorkerLaunch(worker_id, "default", "p", "v1", deployment, ["weir-worker"], {"A": "1"})
    return WorkerRecord(launch=launch, pid=pid, start_time=started)


def test_a_process_is_known_by_its_pid_and_start_time(sleeper: subprocess.Popen[bytes]) -> None:
    started = start_time(sleeper.pid)
    assert started is not None
    assert alive(sleeper.pid, started)
    assert not alive(sleeper.pid, started + 1)  # the pid, but another process's start
    sleeper.kill()
    sleeper.wait()
    assert start_time(sleeper.pid) is None and not alive(sleeper.pid, started)


def test_a_zombie_is_not_alive(sleeper: subprocess.Popen[bytes]) -> None:
    started = start_time(sleeper.pid)
    sleeper.kill()
    while Path(f"/proc/{sleeper.pid}/stat").read_text().split(") ")[1][0] != "Z":
        pass  # exited, not reaped yet
    assert start_time(sleeper.pid) is None
    assert started is not None and not alive(sleeper.pid, started)


def test_records_round_trip_owner_only(settings: Settings) -> None:
    record = _record("p-v1-0-ab12", 1234, 99)
    write_record(settings, record)
    path = records_dir(settings) / "p-v1-0-ab12.json"
    assert path.stat().st_mode & 0o777 == 0o600
    (records_dir(settings) / "broken.json").write_text("{")
    assert read_records(settings) == {"p-v1-0-ab12": record}


def test_a_record_whose_pid_was_reused_is_not_adopted(
    settings: Settings, sleeper: subprocess.Popen[bytes]
) -> None:
    """The pid is alive but started at another time: another process has it now."""
    started = start_time(sleeper.pid)
    assert started is not None
    write_record(settings, _record("w0", sleeper.pid, started - 1))
    assert adoptable(settings, ["w0"], "d1") is None
    write_record(settings, _record("w0", sleeper.pid, started))
    assert adoptable(settings, ["w0"], "d1") == [_record("w0", sleeper.pid, started)]
    assert adoptable(settings, ["w0"], "d2") is None  # another deployment's worker
    assert adoptable(settings, ["w0", "w1"], "d1") is None  # w1 has no record


def test_one_live_worker_takes_the_dead_ones_along(
    settings: Settings, sleeper: subprocess.Popen[bytes]
) -> None:
    """A dead worker of a deployment that still runs is adopted too (then restarted)."""
    started = start_time(sleeper.pid)
    assert started is not None
    write_record(settings, _record("w0", sleeper.pid, started))
    write_record(settings, _record("w1", sleeper.pid, started + 1))
    assert [r.worker_id for r in adoptable(settings, ["w0", "w1"], "d1") or []] == ["w0", "w1"]


def test_a_reused_pid_is_never_signalled(
    settings: Settings, sleeper: subprocess.Popen[bytes]
) -> None:
    started = start_time(sleeper.pid)
    assert started is not None
    stranger = AdoptedProcess(sleeper.pid, started + 1, lambda: None, ran=True)
    assert stranger.poll() == EXIT_UNKNOWN  # "our" worker is gone
    stranger.kill()
    write_record(settings, _record("w0", sleeper.pid, started + 1))
    assert terminate_recorded(settings) == []
    assert sleeper.poll() is None  # the process that has the pid now lives on
    assert read_records(settings) == {}


def test_terminate_recorded_stops_the_live_worker(
    settings: Settings, sleeper: subprocess.Popen[bytes]
) -> None:
    started = start_time(sleeper.pid)
    assert started is not None
    write_record(settings, _record("w0", sleeper.pid, started))
    handle = AdoptedProcess(sleeper.pid, started, lambda: None, ran=True)
    assert handle.poll() is None
    assert terminate_recorded(settings, keep=["w0"]) == []  # kept: still running
    assert terminate_recorded(settings) == [sleeper.pid]
    assert sleeper.wait(timeout=10) == -15  # SIGTERM
    assert read_records(settings) == {}


def _beat(status: str, pid: int = 7, reason: str | None = None, age_s: float = 0.0) -> WorkerStatus:
    return WorkerStatus(
        worker_id="w0",
        workspace="default",
        pipeline="p",
        version="v1",
        replica=0,
        pid=pid,
        host="h",
        status=status,  # type: ignore[arg-type]
        reason=reason,
        time=datetime.now(UTC) - timedelta(seconds=age_s),
    )


@pytest.mark.parametrize(
    ("beat", "ran", "code"),
    [
        ({"status": "Stopped"}, True, 0),  # drained
        ({"status": "Stopped", "reason": "its drain gave up"}, True, EXIT_DRAIN_INCOMPLETE),
        ({"status": "Error", "reason": "memory limit exceeded"}, True, EXIT_OVER_MEMORY),
        ({"status": "Error", "reason": "no such model"}, False, EXIT_CANNOT_START),
        ({"status": "Error", "reason": "no heartbeat for 40s", "age_s": 40}, True, EXIT_UNKNOWN),
        ({"status": "Running"}, True, EXIT_UNKNOWN),  # killed: no last word
        ({"status": "Stopped", "pid": 8}, True, EXIT_UNKNOWN),  # another process's heartbeat
        (None, True, EXIT_UNKNOWN),
    ],
)
def test_the_exit_code_of_a_worker_not_our_child_comes_from_its_last_word(
    beat: dict[str, Any] | None, ran: bool, code: int
) -> None:
    assert exit_code_from(None if beat is None else _beat(**beat), 7, ran=ran) == code


def test_a_workers_numeric_libraries_get_the_threads_its_onnxruntime_gets() -> None:
    """numpy's BLAS in the worker's environment starts as many threads as asked (one per
    core without the limits: a Python step's small products then cost ~40x the CPU)."""
    pytest.importorskip("threadpoolctl")
    code = (
        "import numpy, threadpoolctl; "
        "print(sorted({i['num_threads'] for i in threadpoolctl.threadpool_info()}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, **thread_limits(1)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[1]"
