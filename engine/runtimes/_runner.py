"""The process a Python step with its own packages runs in, and the pipe protocol to it.

Run by a worker as `<step env>/bin/python -m engine.runtimes._runner STEP_DIR MODULE NAME`,
with only weir's `engine` package on its path beside the step's environment (which has
numpy and pyarrow, at whatever versions the step's requirements chose). It imports the
step's module, says it is ready, then answers each record batch it reads on stdin with
the step's output batch (or the error) on stdout, until stdin closes. The step's own
prints go to stderr (the worker's log), as stdout carries the protocol.

A frame is a kind byte, the payload's length (8 bytes, big-endian) and the payload: an
Arrow IPC stream for batches, JSON for errors.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import traceback
from typing import BinaryIO

from engine import codecs
from engine.errors import CodecError, StepFailed, WeirError
from engine.runtimes._step_module import MISSING_ENTRY, call, has_entry

READY = b"R"
BATCH = b"B"
ERROR = b"E"
_LENGTH = 8


def write_frame(out: BinaryIO, kind: bytes, payload: bytes) -> None:
    out.write(kind + len(payload).to_bytes(_LENGTH, "big"))
    out.write(payload)
    out.flush()


def read_frame(source: BinaryIO) -> tuple[bytes, bytes] | None:
    """The next frame, or None at the end of the stream (the other side closed it)."""
    head = _read_exactly(source, 1 + _LENGTH)
    if head is None:
        return None
    payload = _read_exactly(source, int.from_bytes(head[1:], "big"))
    if payload is None:
        return None
    return head[:1], payload


def _read_exactly(source: BinaryIO, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = source.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
    sys.path.insert(0, step_dir)
    os.chdir(step_dir)  # files shipped in the archive open by relative path
    try:
        module = importlib.import_module(module_name)
    except BaseException as exc:  # noqa: BLE001 - whatever the import raised is the reason
        lines = traceback.format_exception_only(type(exc), exc)
        write_frame(out, ERROR, error_payload(WeirError(
            f"importing {module_name}.py failed: {''.join(lines).strip()}")))
        return 1
    if not has_entry(module):
        write_frame(out, ERROR, error_payload(WeirError(f"{module_name}.py {MISSING_ENTRY}")))
        return 1
    write_frame(out, READY, b"")
    while (frame := read_frame(source)) is not None:
        try:
            batch = codecs.decode(frame[1], codecs.ARROW_STREAM)
            write_frame(out, BATCH, codecs.encode(call(module, step, batch), codecs.ARROW_STREAM))
        except WeirError as exc:
            write_frame(out, ERROR, error_payload(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
