"""The process a Python step with its own packages runs in, and the pipe protocol to it.

Run by a worker as `<step env>/bin/python -m engine.runtimes._runner STEP_DIR MODULE NAME`,
with only weir's `engine` package on its path beside the step's environment (which has
numpy and pyarrow, at whatever versions the step's requirements chose). It imports the
step's module, says it is ready, then answers each record batch it reads on stdin with
the step's output batch (or the error) on stdout, until stdin closes. The step's own
prints go to stderr (the worker's log), as stdout carries the protocol.

A message is a kind byte, then for a batch an Arrow IPC stream written straight into the
pipe (it ends itself, and nothing is copied into bytes first), for an error its length (8
bytes, big-endian) and JSON. The pipes are widened to 1 MiB, so a batch of images crosses
in a few system calls rather than one per 64 KiB.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import sys
import traceback
from typing import IO

import pyarrow as pa

from engine import codecs
from engine.errors import CodecError, StepFailed, WeirError
from engine.runtimes._step_module import MISSING_ENTRY, call, has_entry

READY = b"R"
BATCH = b"B"
ERROR = b"E"
_LENGTH = 8
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl's, on Linux
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions()


def widen_pipe(fd: int) -> None:
    """Give a pipe a 1 MiB buffer where the system allows (it stays 64 KiB elsewhere)."""
    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
        pass


def send_batch(out: IO[bytes], batch: pa.RecordBatch) -> None:
    out.write(BATCH)
    with pa.ipc.new_stream(out, batch.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(batch)
    out.flush()


def send(out: IO[bytes], kind: bytes, payload: bytes = b"") -> None:
    """A ready or error message."""
    out.write(kind + len(payload).to_bytes(_LENGTH, "big") + payload)
    out.flush()


def receive(source: IO[bytes]) -> tuple[bytes, pa.RecordBatch | bytes] | None:
    """The next message: its kind and its batch (or payload); None once the other side
    closed the pipe (it exited)."""
    kind = source.read(1)
    if not kind:
        return None
    if kind == BATCH:
        try:
            reader = pa.ipc.open_stream(source)
            batches = list(reader)
        except (pa.ArrowException, OSError):  # cut short: the other side died
            return None
        batch = (
            batches[0]
            if len(batches) == 1
            else pa.Table.from_batches(batches, reader.schema).combine_chunks().to_batches()[0]
        )
        return kind, codecs.without_dictionaries(batch)
    head = source.read(_LENGTH)
    if len(head) < _LENGTH:
        return None
    payload = source.read(int.from_bytes(head, "big"))
    return kind, payload


def error_payload(exc: BaseException) -> bytes:
    """An error as the JSON the worker turns back into the same kind of error."""
    if isinstance(exc, StepFailed):
        return json.dumps({"type": "StepFailed", "reason": exc.reason}).encode()
    if isinstance(exc, CodecError):
        return json.dumps({"type": "CodecError", "message": str(exc)}).encode()
    return json.dumps({"type": "ModelLoadError", "message": str(exc)}).encode()


def main(argv: list[str]) -> int:
    step_dir, module_name, step = argv
    out = os.fdopen(os.dup(1), "wb")  # the protocol's own copy of stdout
    os.dup2(2, 1)  # and the step's prints go to stderr
    source = sys.stdin.buffer
    widen_pipe(out.fileno())
    widen_pipe(source.fileno())
    sys.path.insert(0, step_dir)
    os.chdir(step_dir)  # files shipped in the archive open by relative path
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - whatever the import raised is the reason
        lines = traceback.format_exception_only(type(exc), exc)
        send(
            out,
            ERROR,
            error_payload(
                WeirError(f"importing {module_name}.py failed: {''.join(lines).strip()}")
            ),
        )
        return 1
    if not has_entry(module):
        send(out, ERROR, error_payload(WeirError(f"{module_name}.py {MISSING_ENTRY}")))
        return 1
    send(out, READY)
    while (message := receive(source)) is not None:
        batch = message[1]
        assert isinstance(batch, pa.RecordBatch)
        try:
            send_batch(out, call(module, step, batch))
        except WeirError as exc:
            send(out, ERROR, error_payload(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
