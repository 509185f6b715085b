"""The deployer's record of a redeploy in progress (a hot swap) and of one that failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from control.records import Deployment


@dataclass
class Swap:
    """A redeploy waiting for its new workers to run."""

    new: Deployment
    previous: Deployment
    """What serves until the new version runs, and what is restored if it fails."""
    old_ids: list[str]
    """Workers to retire once the new version runs (the previous ones, and any
    half-started version this redeploy superseded)."""
    task: asyncio.Task[None] | None = None
    handing_over: bool = False
    """The new version runs and the old workers were told to stop; until they
    report Draining (no more input taken) the new deployment is not Running."""


@dataclass
class FailedRedeploy:
    """A redeploy that did not reach Running; reported by status() until the next (un)deploy."""

    deployment: Deployment
    reason: str


def swap_to(new: Deployment, current: Deployment, superseded: Swap | None) -> Swap:
    """The hot swap a redeploy of a deployed pipeline starts, from `current` (what the
    registry records) to `new`. One that supersedes a redeploy still starting retires that
    half-started version too, and restores what served before it if `new` fails. One that
    supersedes a redeploy handing over starts from that one's new version, which serves: the
    version before it is already stopping and must not come back."""
    if superseded is not None and not superseded.handing_over:
        return Swap(new, superseded.previous, [*superseded.old_ids, *current.worker_ids])
    return Swap(new, current, list(current.worker_ids))
