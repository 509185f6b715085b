"""A worker's memory limit: parsing "1Gi"-style sizes and watching resident memory against it.

A deployment's `memory` ("512Mi", "1Gi") is enforced by the worker itself:
its heartbeat thread asks `MemoryWatch.over()` every beat and, over the
limit, reports the reason and exits (streams/worker.py). Address-space limits
(RLIMIT_DATA, RLIMIT_AS) cannot do this: pyarrow's allocator alone reserves
about 1 GiB of address space that it never touches, so they would refuse
healthy workers while not bounding what a worker really uses. Resident memory
(RSS) is what an OOM killer or a container limit counts, so it is what is
watched.
"""

from __future__ import annotations

import os
import re
import resource
import sys
from collections.abc import Callable

UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
"""Suffixes as Kubernetes writes them: binary Ki/Mi/Gi/Ti, decimal K/M/G/T, none for bytes."""
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|K|M|G|T)?$")
_BINARY = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def parse_memory(text: str) -> int:
    """Bytes in a memory size such as "1Gi", "512Mi", "1.5Gi", "1G", "100K" or "1048576".

    Raises ValueError, naming the accepted forms, for anything else or for zero.
    """
    match = _SIZE.match(text.strip())
    if match is None:
        raise ValueError(
            f"memory {text!r} is not a size: write a number with an optional unit, binary "
            "Ki/Mi/Gi/Ti or decimal K/M/G/T, e.g. '512Mi', '1Gi', '1.5Gi' or '1G'"
        )
    size = int(float(match.group(1)) * UNITS[match.group(2) or ""])
    if size < 1:
        raise ValueError(f"memory {text!r} is less than one byte; give a size such as '512Mi'")
    return size


def format_bytes(size: int) -> str:
    """A size for people: "1 GiB", "1.3 GiB", "400 MiB", "512 bytes"."""
    for unit, factor in _BINARY:
        if size >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def rss_bytes() -> int:
    """This process's resident set size now, with its children's (a Python step that runs in
    a process of its own: engine.runtimes._step_process), as a container limit counts them
    (Linux); elsewhere, this process's peak resident size."""
    try:
        own = _resident("self")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS: bytes; others: KiB
    return own + sum(_resident(pid, gone=0) for pid in _children())


def _resident(pid: str, gone: int | None = None) -> int:
    """A process's resident bytes from /proc; `gone` for one that exited meanwhile."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        if gone is None:
            raise
        return gone


def _children() -> list[str]:
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return []
    found = []
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                found += children.read().split()
        except OSError:
            continue
    return found


class MemoryWatch:
    """Compares the worker's resident memory with its limit (None: no limit)."""

    def __init__(self, limit_bytes: int | None, rss: Callable[[], int] = rss_bytes) -> None:
        self.limit_bytes = limit_bytes
        self._rss = rss

    def over(self) -> str | None:
        """None while under the limit (or without one); otherwise why the worker must stop."""
        if self.limit_bytes is None:
            return None
        used = self._rss()
        if used <= self.limit_bytes:
            return None
        shown_used, shown_limit = format_bytes(used), format_bytes(self.limit_bytes)
        if shown_used == shown_limit:  # just over: rounding would hide the difference
            shown_used, shown_limit = f"{used} bytes", f"{self.limit_bytes} bytes"
        return (
            f"memory limit exceeded: the worker (with its steps' own processes) uses "
            f"{shown_used} resident, its limit is {shown_limit}; raise memory in the "
            "deployment config (DeploymentConfigBuilder().memory(...))"
        )
