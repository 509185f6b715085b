"""`weir up` / `weir down` as processes: one stack per home, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _weir(home: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WEIR_HOME": str(home)}
    env.pop("WEIR_KAFKA_BOOTSTRAP", None)
    env.pop("WEIR_REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "control.cli", *args],
        env=env,
        text=True,
        capture_output=True,
        timeout=timeout,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_up_detach_twice_then_down_leaves_no_process(tmp_path: Path) -> None:
    import json

    first = _weir(tmp_path, "up", "--detach")
    assert first.returncode == 0, first.stderr
    stack = json.loads((tmp_path / "stack.json").read_text())
    pids = list(stack["pids"].values())
    assert len(pids) == 3 and all(_alive(p) for p in pids)
    assert {"server_url", "kafka_bootstrap", "redis_url", "token"} <= set(stack)

    second = _weir(tmp_path, "up", "--detach")
    assert second.returncode == 0
    assert "already running" in second.stderr
    assert json.loads((tmp_path / "stack.json").read_text())["pids"] == stack["pids"]

    down = _weir(tmp_path, "down")
    assert down.returncode == 0, down.stderr
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)
    assert not (tmp_path / "stack.json").exists()
    # Redis kept its append-only file (a file before Redis 7, a folder since).
    assert {"appendonly.aof", "appendonlydir"} & {p.name for p in (tmp_path / "redis").iterdir()}


def test_down_without_a_stack_says_so(tmp_path: Path) -> None:
    result = _weir(tmp_path, "down")
    assert "not running" in result.stderr


def test_cli_without_a_stack_exits_nonzero_with_advice(tmp_path: Path) -> None:
    result = _weir(tmp_path, "pipelines", "list")
    assert result.returncode == 1
    assert "weir up" in result.stderr
