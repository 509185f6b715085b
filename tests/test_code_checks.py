"""The code checks run with the tests: `ruff check` (lint), `ruff format --check` (layout: run
`ruff format .` to apply it) and `mypy` (types), all configured in pyproject.toml. mypy keeps
its cache in .mypy_cache, so a run after the first checks only what changed (seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.code_checks


@pytest.mark.parametrize(
    "tool, args",
    [
        ("ruff", ["check", "--no-fix", "."]),
        ("ruff", ["format", "--check", "."]),
        ("mypy", []),  # files and strictness from [tool.mypy]
    ],
)
def test_tool_passes(tool: str, args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (
        f"{tool} {' '.join(args)} found problems (fix them, or see pyproject.toml's"
        f" [tool.{tool}]):\n{done.stdout}{done.stderr}"
    )
