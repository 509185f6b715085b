"""Waiting for a deploy: the pipeline's status polled until a version runs or certainly failed,
and the error that says why it did not."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from control.errors import WaitForDeployError
from control.pipeline_status import PipelineStatus


def wait_running(
    status_of: Callable[[], PipelineStatus],
    version: str,
    limit: float,
    quiet: bool,
    *,
    redeploy: bool = False,
) -> PipelineStatus:
    """Poll `status_of()` until `version` runs or certainly failed (a redeploy has failed only
    once the server has undone it: until then the new version may briefly show Error)."""
    out = sys.stderr
    if not quiet:
        out.write(
            f"Waiting for deployment (up to {limit:.0f}s; a deploy that fails is "
            "then undone, which takes a little longer) "
        )
    deadline = time.monotonic() + limit
    status = PipelineStatus(status="not asked yet")
    shown: set[str] = set()
    while time.monotonic() < deadline:
        status = status_of()
        if status.failed(version, redeploy=redeploy) or status.runs(version):
            break
        notes = status.starting_reasons(version) - shown
        if notes:  # loading makes progress (a step's environment builds): keep waiting
            deadline = max(deadline, time.monotonic() + limit)
        if not quiet:
            out.write("".join(f"\n  {note} " for note in sorted(notes)) or ".")
            out.flush()
        shown |= notes
        time.sleep(0.25)
    running = status.runs(version)
    if not quiet:
        out.write(" ok\n" if running else " failed\n")
    return status


def deploy_failed(
    pipeline: str, status: PipelineStatus, limit: float, waited: float
) -> WaitForDeployError:
    """The error for a deploy of `pipeline` whose version did not run: what the workers last
    said, after `waited` of `limit` seconds, and where to look."""
    reasons = status.reasons()
    why = (
        f"did not reach Running within {limit:.0f}s"
        if waited >= limit
        else f"failed after {waited:.1f}s"
    )
    hint = (
        "Its workers loaded their models but were never given partitions: see the "
        "worker logs under WEIR_HOME/run/logs"
        if any("waiting for partitions" in r for r in reasons)
        else "Check that the models load (`weir models list`) and the worker logs "
        "under WEIR_HOME/run/logs"
    )
    return WaitForDeployError(
        f"pipeline {pipeline!r} {why} "
        f"(last status {status.status!r}{': ' + '; '.join(reasons) if reasons else ''}); "
        f"what this deploy started was undone. {hint}"
    )
