"""The worker's side of a Python step that runs in a process of its own (engine.runtimes._runner).

The step's process is started at load and reads record batches from a pipe, so the step
can run in an environment with packages (and versions) weir's own cannot have. Only
weir's `engine` package is put on its path: a folder holding a link to it, so nothing
else of weir's environment leaks into the step's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from pathlib import Path

import pyarrow as pa

import engine
from engine.errors import CodecError, ModelLoadError, StepFailed
from engine.runtimes._runner import ERROR, receive, send_batch, widen_pipe

STOP_WAIT_S = 5.0


class StepProcess:
    """A step's module running in `python`'s environment, fed batches over a pipe."""

    def __init__(
        self, python: Path, step_dir: Path, module: str, step: str, kit_root: Path
    ) -> None:
        self.python = python
        self.step_dir = step_dir
        self.module = module
        self.step = step
        self._kit = _engine_kit(kit_root)
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the process and wait until it imported the module.

        :raises ModelLoadError: the import failed (with its error), or the process died.
        """
        env = {**os.environ, "PYTHONPATH": str(self._kit), "PYTHONNOUSERSITE": "1"}
        env.pop("PYTHONHOME", None)
        self._proc = subprocess.Popen(
            [
                str(self.python),
                "-m",
                "engine.runtimes._runner",
                str(self.step_dir),
                self.module,
                self.step,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        widen_pipe(self._proc.stdin.fileno())
        message = self._receive()
        if message is None:
            raise ModelLoadError(f"step {self.step!r}: {self._exited()}")
        if message[0] == ERROR:
            self.stop()
            raise ModelLoadError(f"step {self.step!r}: {_error(message[1])['message']}")

    def predict(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The step's output for `batch`, computed in its process (started again if it died)."""
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                try:
                    self.start()
                except ModelLoadError as exc:
                    raise StepFailed(self.step, f"its process cannot start again: {exc}") from exc
            assert self._proc is not None and self._proc.stdin is not None
            try:
                send_batch(self._proc.stdin, batch)
            except OSError:
                pass  # it died (a broken pipe): reading says how
            message = self._receive()
            if message is None:
                raise StepFailed(self.step, f"{self._exited()}; it starts again for the next batch")
        kind, answer = message
        if isinstance(answer, pa.RecordBatch):
            return answer
        error = _error(answer)
        if error["type"] == "StepFailed":
            raise StepFailed(self.step, error["reason"])
        if error["type"] == "CodecError":
            raise CodecError(error["message"])
        raise StepFailed(self.step, error["message"])

    def stop(self) -> None:
        """Close its input (it exits once it reads the end), killing it if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def _receive(self) -> tuple[bytes, pa.RecordBatch | bytes] | None:
        assert self._proc is not None and self._proc.stdout is not None
        return receive(self._proc.stdout)

    def _exited(self) -> str:
        assert self._proc is not None
        code = self._proc.wait()
        self.stop()
        return f"its process exited with code {code} (its error is in the worker's log)"


def _error(payload: pa.RecordBatch | bytes) -> dict[str, str]:
    assert isinstance(payload, bytes)
    error: dict[str, str] = json.loads(payload)
    return error


def _engine_kit(root: Path) -> Path:
    """A folder that holds only a link to weir's `engine` package, for the step's path."""
    source = Path(engine.__file__).resolve().parent
    kit = root / f"kit-{hashlib.sha256(str(source).encode()).hexdigest()[:12]}"
    link = kit / "engine"
    if not link.exists():
        kit.mkdir(parents=True, exist_ok=True)
        tmp = kit / f".engine-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(source, target_is_directory=True)
        os.replace(tmp, link)
    return kit
