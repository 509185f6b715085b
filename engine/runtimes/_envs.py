"""Virtual environments for Python steps with their own requirements, built once and cached.

An environment is keyed by the hash of what goes into it (the step's requirements, the
packages the runner needs, the Python version, where wheels come from), so steps that need
the same packages share one, and a new version of a step with unchanged requirements
starts at once. It is built with weir's own pip into a venv without pip of its own
(`pip --python`: a second or so instead of ~12 s for ensurepip), under a file lock, so
replicas starting together build it once; a build that did not finish is started again.
"""

from __future__ import annotations

import fcntl
import hashlib
import platform
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import ModelLoadError
from engine.runtimes.base import Progress

RUNNER_PACKAGES = ("numpy", "pyarrow")
"""What the runner needs beside the step's own requirements (its Arrow exchange)."""
READY = "weir-ready"
"""Written into an environment once it is complete."""
SHOWN = ("Collecting", "Downloading", "Processing", "Installing", "Successfully")
"""pip's lines worth showing as progress."""
ERROR_LINES = 30


def environment_python(
    requirements: str,
    *,
    root: Path,
    wheel_dir: Path | None,
    step: str,
    progress: Progress | None = None,
) -> Path:
    """The Python of the environment `requirements` need, built first if not cached.

    :raises ModelLoadError: pip could not install them (with pip's own message).
    """
    say = progress or (lambda _: None)
    target = (
        root / f"py{sys.version_info.major}{sys.version_info.minor}-"
        f"{environment_key(requirements, wheel_dir)[:16]}"
    )
    python = target / "bin" / "python"
    if (target / READY).exists():
        return python
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f"{target.name}.lock"):
        if (target / READY).exists():  # another process built it while this one waited
            return python
        if target.exists():
            shutil.rmtree(target)  # an earlier build that did not finish
        say(f"step {step!r}: building its environment ({target.name})")
        _run([sys.executable, "-m", "venv", "--without-pip", str(target)], step, say)
        (target / "requirements.txt").write_text(requirements + "\n")
        source = ["--no-index", "--find-links", str(wheel_dir)] if wheel_dir is not None else []
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(python),
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
                *source,
                "-r",
                str(target / "requirements.txt"),
                *RUNNER_PACKAGES,
            ],
            step,
            say,
            target=target,
        )
        (target / READY).write_text(requirements + "\n")
    say(f"step {step!r}: environment ready")
    return python


def environment_key(requirements: str, wheel_dir: Path | None) -> str:
    """The sha256 of everything that decides what an environment holds."""
    parts = [
        requirements,
        *RUNNER_PACKAGES,
        platform.python_implementation(),
        f"{sys.version_info.major}.{sys.version_info.minor}",
        platform.machine(),
        str(wheel_dir or ""),
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _run(command: list[str], step: str, say: Progress, *, target: Path | None = None) -> None:
    """Run a build command, showing its progress lines; its errors become ModelLoadError."""
    tail: deque[str] = deque(maxlen=ERROR_LINES)
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail.append(line)
            if line.lstrip().startswith(SHOWN):
                say(f"step {step!r}: {line.strip()}")
    if proc.returncode == 0:
        return
    if target is not None:
        shutil.rmtree(target, ignore_errors=True)
    errors = [
        line
        for line in tail
        if line.startswith("ERROR") and not line.startswith("ERROR: Ignored the following")
    ] or list(tail)
    raise ModelLoadError(
        f"installing the requirements of step {step!r} failed ({command[2]} "
        f"exited with {proc.returncode}): {' '.join(errors)[-2000:]}; fix requirements.txt "
        "in the step's archive and upload it again"
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
