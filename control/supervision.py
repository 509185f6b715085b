"""Supervision of local workers: restarting those that died, forgetting long-gone remote ones.

A local worker that dies is restarted (unless it exited because it cannot
start): at once, or, if it keeps dying soon after it starts (a record that
crashes it each time it is read again), after a delay that doubles up to
RESTART_BACKOFF_MAX_S. A deployment's `memory` is passed to each worker, which
exits when its resident memory goes over it (streams/memory.py): while Starting
that is a failure to start, later it is restarted like a crash. A remote worker
(one this server did not start) silent for REMOTE_FORGET_S is forgotten.

A round reads the registry (which deployments want which workers, an adopted worker's
heartbeats), so it runs in a thread: a Redis that does not answer holds the round, not the
server's event loop and the requests on it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime

from control.errors import RegistryUnavailable
from control.local_workers import LocalWorker, LocalWorkers
from control.process_exits import ExitWatch
from control.redeploys import Swap
from control.registry import Registry
from streams.outage import Outage
from streams.worker import EXIT_CANNOT_START, EXIT_OVER_MEMORY

log = logging.getLogger(__name__)

SUPERVISE_EVERY_S = 0.25
"""How often dead local workers are looked for where their exits cannot be waited for
(control/process_exits.py; a restart begins within this long)."""
LOOK_EVERY_S = 1.0
"""How often they are looked over where exits wake the supervisor: a worker started since
the last look is watched from the next, and a delayed restart begins within this long."""
RESTART_BACKOFF_MAX_S = 30.0
"""A worker that keeps dying soon after it starts (e.g. a record that crashes it
every time) is restarted after 0, 1, 2, 4 ... s, at most this long."""
STABLE_AFTER_S = 60.0
"""A worker that ran this long before it died, or answered records, is restarted at once
again."""
REMOTE_FORGET_S = 600.0
"""A remote worker silent this long is taken to be gone for good (its host removed):
`status()` stops listing it. If it comes back it reports again."""
FORGET_EVERY_S = 10.0
"""How often remote workers' heartbeats are looked over for those silent too long."""


class Supervisor:
    """Watches the deployer's local workers (it shares the deployer's state)."""

    def __init__(
        self, registry: Registry, local: LocalWorkers, swaps: dict[tuple[str, str], Swap]
    ) -> None:
        self.registry = registry
        self._local = local
        self._swaps = swaps
        self._failing = Outage(log, "worker supervision (reading the registry)")

    async def run(self) -> None:
        """Restart local workers that died while a deployment still wants them. With Redis
        away, which workers are wanted is unknown: none is touched until it is back (they
        serve on, whatever their heartbeats, which cannot be read either).

        While every local worker runs, the registry is not read (an idle server's rounds
        cost next to nothing), but to forget remote workers every FORGET_EVERY_S.

        Cancelled, it lets a round in progress finish first: a worker that round restarts
        is then among those the stopping server stops."""
        forget_at = 0.0
        exits = ExitWatch()
        alive: list[int] = []
        try:
            while True:
                await exits.wait(alive, LOOK_EVERY_S if exits.sees_exits else SUPERVISE_EVERY_S)
                swapped_out = {w for swap in self._swaps.values() for w in swap.old_ids}
                looking = asyncio.ensure_future(
                    asyncio.to_thread(self._round, forget_at, swapped_out)
                )
                try:
                    alive, forget_at = await asyncio.shield(looking)
                except asyncio.CancelledError:
                    await asyncio.gather(looking, return_exceptions=True)
                    raise
        finally:
            exits.close()

    def _round(self, forget_at: float, swapped_out: set[str]) -> tuple[list[int], float]:
        """Restart the dead and forget the long gone, where due (in a thread). Returns the
        pids of the local workers now alive, and when remote workers are to be looked over
        next. `swapped_out`: the workers of hot swaps in progress, still wanted."""
        try:  # whatever a round meets, the next one runs: supervision never ends on its own
            if any(local.proc.poll() is not None for local in self._local.values()):
                self._restart_dead(swapped_out)
            if time.monotonic() >= forget_at:
                self._forget_gone_remote()
                forget_at = time.monotonic() + FORGET_EVERY_S
            alive = [local.proc.pid for local in self._local.values() if local.proc.poll() is None]
        except RegistryUnavailable as exc:  # said once; tried again each round
            self._failing.failed(exc)
        except Exception:
            log.exception("worker supervision failed")
        else:
            self._failing.ok()
            return alive, forget_at
        return [], forget_at

    def _restart_dead(self, swapped_out: set[str]) -> None:
        wanted = {w for d in self.registry.list_deployments() for w in d.worker_ids}
        wanted |= swapped_out
        for local in list(self._local.values()):
            code = local.proc.poll()
            if code is None or local.worker_id not in wanted:
                continue
            if code == EXIT_CANNOT_START:
                if local.last_exit != code:
                    log.error(
                        "worker %s cannot start; not restarting it (see its log)", local.worker_id
                    )
                local.last_exit = code
                continue
            now = time.monotonic()
            if local.restart_at is None:  # just found dead: when to start it again
                stable = now - local.started_at >= STABLE_AFTER_S or self._answered(local)
                local.quick_deaths = 0 if stable else local.quick_deaths + 1
                delay = (
                    0.0
                    if local.quick_deaths <= 1
                    else min(2.0 ** (local.quick_deaths - 2), RESTART_BACKOFF_MAX_S)
                )
                local.restart_at = now + delay
                local.last_exit = code
                local.last_reason = self._exit_reason(local, code)
                log.warning(
                    "worker %s exited with %s%s; restarting it in %.0fs",
                    local.worker_id,
                    code,
                    f" ({local.last_reason})" if local.last_reason else "",
                    delay,
                )
            if now < local.restart_at:
                continue
            self._local.restart(local)

    def _answered(self, local: LocalWorker) -> bool:
        """Whether the dead process finished records: one killed from outside, not one that
        dies on the record it reads first (those wait longer each time)."""
        beat = self._local.last_beat(local)
        return beat is not None and beat.pid == local.proc.pid and beat.processed > 0

    def _exit_reason(self, local: LocalWorker, code: int) -> str | None:
        """The reason an exited process gave in its last heartbeat, if it said why it left."""
        if code != EXIT_OVER_MEMORY:
            return None
        beat = self._local.last_beat(local)
        if beat is None or beat.pid != local.proc.pid or beat.status != "Error":
            return None
        return beat.reason

    def _forget_gone_remote(self) -> None:
        """Drop the heartbeats of remote workers silent for over REMOTE_FORGET_S."""
        now = datetime.now(UTC)
        for deployment in self.registry.list_deployments():
            ws, name = deployment.workspace, deployment.pipeline
            gone = [
                b.worker_id
                for b in self._local.remote_beats(ws, name)
                if b.worker_id not in deployment.worker_ids
                and (now - b.time).total_seconds() > REMOTE_FORGET_S
            ]
            if gone:
                log.warning(
                    "forgetting remote workers of %s/%s silent for over %.0fs: %s",
                    ws,
                    name,
                    REMOTE_FORGET_S,
                    ", ".join(gone),
                )
                self.registry.forget_workers(ws, name, gone)
