"""Retiring workers: each drains its version's topics and exits, then those topics go.

Local workers get SIGTERM; remote ones (`weir worker` on other hosts, the
compose `worker` service) a stop request in the registry, and are waited for by
their heartbeats. Once every retired worker of a deployment drained cleanly (and
none of it runs anywhere), the deployment's own topics are deleted; if a drain
gave up or a worker died in it, they are deleted only if every record in them was
read, and kept while some are not. A server killed before it deleted them leaves
them to the next one, which does the same (`drop_leftover_topics`).

With Redis away a retirement waits for it (`_despite_redis_away`) rather than stopping
half-way: one cut short left old workers serving beside the new ones, or their topics
for good.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from control.errors import RegistryUnavailable
from control.local_workers import LocalWorkers
from control.redeploys import Swap
from control.registry import Registry
from control.settings import Settings
from control.worker_ids import worker_role
from control.worker_processes import STOP_GRACE_S
from aiokafka import TopicPartition

from streams.admin import delete_topics, topic_names
from streams.lag import GroupLag
from streams.outage import Outage
from streams.stall import Stall
from streams.topics import TopicMap
from streams.worker import EXIT_CANNOT_START, EXIT_DRAIN_INCOMPLETE
from streams.worker_spec import group_id

log = logging.getLogger(__name__)

LEFT_NOTHING = {0, -signal.SIGTERM, EXIT_CANNOT_START}
"""Exit codes of a stopped worker that left no record behind in its version's topics: it
drained, or was stopped (by SIGTERM's default action) or failed before it read any."""
ENDED_ITS_DRAIN = LEFT_NOTHING | {EXIT_DRAIN_INCOMPLETE}
"""Exit codes of a stopping worker that is not started again to finish its drain: it left
nothing, or gave the drain up itself (nothing moved for its drain timeout). One that died
otherwise (SIGKILLed, crashed) is started again for it (LocalWorkers.terminate)."""
REMOTE_STOP_POLL_S = 0.2
"""How often the heartbeats of remote workers told to stop are read."""
REDIS_RETRY_S = 1.0
"""While Redis is away, how often a retirement tries its registry call again."""
DRAIN_WAITERS = 32
"""Threads that wait for retired workers to drain and exit (created as needed)."""

T = TypeVar("T")


class Retirement:
    """Stops the deployer's workers and drops their topics (it shares the deployer's state;
    `lock` is the deployer's)."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        topics: TopicMap,
        local: LocalWorkers,
        swaps: dict[tuple[str, str], Swap],
        lock: asyncio.Lock,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self._local = local
        self._swaps = swaps
        self._lock = lock
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False
        # A drain is waited for in a thread for as long as it lasts (minutes, for a worker
        # restarted to finish it). In the loop's default pool (6 threads on two cores) a
        # few of them would hold every thread, and every other thread call of the server
        # (the log agent's reads and writes, the gateway's lookups) would queue behind them.
        self._drain_waits = ThreadPoolExecutor(DRAIN_WAITERS, thread_name_prefix="drain-wait")

    async def close(self) -> None:
        """Wait for what runs in the background to end, without waiting for Redis (server
        shutdown: the next server's start retires what is left, `Deployer.retire_strays`)."""
        self._closing = True
        await self.wait()
        self._drain_waits.shutdown(wait=False)

    def retire_in_background(self, ws: str, name: str, worker_ids: list[str]) -> None:
        """`retire` the workers without waiting for it (`wait` does)."""
        self._in_background(self.retire(ws, name, worker_ids))

    async def wait(self) -> None:
        """Wait for what runs in the background to end."""
        await asyncio.gather(*self._background, return_exceptions=True)

    def _in_background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, RegistryUnavailable):  # only while the server stops
            log.warning("a retirement was left unfinished (%s); the next server finishes it", exc)
        elif exc is not None:
            log.error("a retirement failed", exc_info=exc)

    async def _despite_redis_away(self, what: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()`, tried again every REDIS_RETRY_S while it fails for Redis being away
        (said once); not once the server is stopping."""
        outage = Outage(log, what)
        while True:
            try:
                result = await attempt()
            except RegistryUnavailable as exc:
                if self._closing:
                    raise
                outage.failed(exc)
                await asyncio.sleep(REDIS_RETRY_S)
            else:
                outage.ok()
                return result

    async def _registry_call(self, what: str, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)`, a registry read or write, in a thread, despite Redis being away."""
        return await self._despite_redis_away(what, lambda: asyncio.to_thread(call, *args))

    async def _drained(self, wait: Callable[..., Mapping[str, T]], *args: Any) -> Mapping[str, T]:
        """`wait(*args)`, a blocking wait for workers to drain and exit, in a drain-wait thread."""
        return await asyncio.get_running_loop().run_in_executor(self._drain_waits, wait, *args)

    async def retire(self, ws: str, name: str, worker_ids: list[str]) -> None:
        """Stop workers: each drains its version's topics, then exits; then drop those topics.

        Main workers go first: until they have drained, they still fan rows
        out to the shadow workers' topics and send rows to their sidekicks (and
        wait for the sidekicks' answers). Remote workers get the same stop
        request through the registry and are waited for by their heartbeats.
        """
        what = f"retiring workers of {ws}/{name}"
        beats = {
            b.worker_id: b for b in await self._registry_call(what, self.registry.workers, ws, name)
        }
        remote = {
            w
            for w in worker_ids
            if w not in self._local
            and w in beats
            and beats[w].status in ("Starting", "Running", "Draining")
        }
        deployments = {self._local[w].deployment for w in worker_ids if w in self._local} | {
            beats[w].deployment for w in remote
        }
        exits: dict[str, int | None] = {}
        for role in ("main", "shadow", "sidekick"):
            ids = [w for w in worker_ids if worker_role(w) == role]
            if ids:
                # The request reaches remote workers too.
                await self._registry_call(what, self.registry.request_stop, ws, name, ids)
                exits.update(
                    await self._drained(self._local.terminate, ids, ENDED_ITS_DRAIN.__contains__)
                )
                exits.update(
                    await self._drained(
                        self._await_remote, ws, name, [w for w in ids if w in remote]
                    )
                )
                await self._registry_call(what, self.registry.forget_workers, ws, name, ids)
        undrained = {w: code for w, code in exits.items() if code not in LEFT_NOTHING}
        if undrained:  # what is left unread in the topics is kept for whoever looks into it
            log.warning(
                "workers %s of %s/%s did not finish draining: the topics of deployment(s) %s "
                "go only if every record in them was read",
                undrained,
                ws,
                name,
                ", ".join(sorted(deployments)),
            )
        for deployment in deployments:
            self._in_background(
                self._drop_deployment_topics(ws, name, deployment, only_if_read=bool(undrained))
            )

    async def drop_leftover_topics(self) -> None:
        """Delete the own topics of deployments that nothing serves any more and whose records
        were all read: left by a server killed after their workers drained and before it
        deleted them. Topics holding unread records are kept, as after a drain that gave up."""
        owners = {
            owner
            for topic in await topic_names(self.settings.worker_settings())
            if (owner := self.topics.deployment_of(topic)) is not None
        }
        for ws, name, deployment in owners:
            self._in_background(
                self._drop_deployment_topics(ws, name, deployment, only_if_read=True)
            )

    async def _drop_deployment_topics(
        self, ws: str, name: str, deployment: str, *, only_if_read: bool = False
    ) -> None:
        """Delete a retired deployment's own topics (boundary and challenger topics), unless
        it serves again or a worker of it (here or remote) is still alive, or
        (`only_if_read`) a record in them is unread."""
        await self._despite_redis_away(
            f"deleting the topics of {ws}/{name} deployment {deployment}",
            lambda: self._drop_unless_used(ws, name, deployment, only_if_read),
        )

    async def _drop_unless_used(
        self, ws: str, name: str, deployment: str, only_if_read: bool
    ) -> None:
        """One try of `_drop_deployment_topics` (the lock is not held while Redis is away)."""
        async with self._lock:
            key = (ws, name)
            current = await asyncio.to_thread(self.registry.get_deployment, ws, name)
            beats = await asyncio.to_thread(self.registry.workers, ws, name)
            swap = self._swaps.get(key)
            pair = (swap.new, swap.previous) if swap else ()
            in_use = {d.id for d in (current, *pair) if d is not None}
            alive = any(
                b.deployment == deployment and b.status in ("Starting", "Running", "Draining")
                for b in beats
            )
            if (
                deployment in in_use
                or alive
                or any(
                    local.deployment == deployment
                    for local in self._local.values()
                    if (local.workspace, local.pipeline) == key
                )
            ):
                return
            try:
                settings = self.settings.worker_settings()
                names = [
                    t
                    for t in await topic_names(settings)
                    if self.topics.deployment_of(t) == (ws, name, deployment)
                ]
                if only_if_read:
                    unread = await self._unread(ws, name, names)
                    if unread:
                        log.warning(
                            "keeping the topics of %s/%s deployment %s that no worker "
                            "runs: %s hold unread records",
                            ws,
                            name,
                            deployment,
                            ", ".join(unread),
                        )
                        return
                await delete_topics(settings, names)
            except Exception:  # the topics stay; nothing else depends on it
                log.exception(
                    "could not delete the topics of %s/%s deployment %s", ws, name, deployment
                )

    async def _unread(self, ws: str, name: str, topics: list[str]) -> list[str]:
        """Those of a deployment's own topics that hold records their reader has not read.

        The deployment's record is gone, so its layout is too: a boundary topic `s<i>` was
        read by sidekick step i's group or by the main group (whichever ran step i), a
        challenger topic by the shadow group. A group that never read a topic has its whole
        length to read, so a topic counts as read when one of its candidates read it all."""
        lag = GroupLag(self.settings.worker_settings())
        await lag.start()
        try:
            unread = []
            for topic in topics:
                boundary = self.topics.parse("boundary", topic)
                if boundary is not None:
                    readers = [
                        group_id(ws, name, "main"),
                        group_id(ws, name, "sidekick", int(boundary["index"])),
                    ]
                    spec = self.topics.boundary(
                        ws, name, boundary["deployment"], int(boundary["index"])
                    )
                else:
                    challenger = self.topics.parse("challenger", topic)
                    assert challenger is not None, topic
                    readers = [group_id(ws, name, "shadow")]
                    spec = self.topics.challenger(
                        ws,
                        name,
                        challenger["deployment"],
                        int(challenger["index"]),
                        int(challenger["challenger"]),
                    )
                tps = [TopicPartition(topic, p) for p in range(spec.partitions)]
                if all([await lag.unread({group: tps}) for group in readers]):
                    unread.append(topic)
            return unread
        finally:
            await lag.stop()

    def _await_remote(self, ws: str, name: str, worker_ids: list[str]) -> dict[str, int | None]:
        """Wait for remote workers told to stop to report Stopped; each one's exit code as far
        as its heartbeats tell (None: it went silent, or finished nothing for too long)."""
        limit = self.settings.worker_settings().drain_timeout_s + STOP_GRACE_S
        stalls = {w: Stall(limit) for w in worker_ids}
        exits: dict[str, int | None] = {}
        while waiting := [w for w in worker_ids if w not in exits]:
            try:
                beats = {b.worker_id: b for b in self.registry.workers(ws, name)}
            except RegistryUnavailable:  # no news while Redis is away: the stall clocks run on
                beats = None
            for w in waiting:
                if beats is not None:
                    beat = beats.get(w)
                    if beat is None or beat.status == "Error":  # gone, or its beats stopped
                        exits[w] = None
                        continue
                    if beat.status == "Stopped":
                        exits[w] = EXIT_DRAIN_INCOMPLETE if beat.reason else 0
                        continue
                    stalls[w].seen((beat.processed + beat.failed, beat.backlog))
                if stalls[w].still_s >= limit:
                    log.warning(
                        "remote worker %s finished nothing for %.0fs while stopping; "
                        "no longer waiting for it",
                        w,
                        limit,
                    )
                    exits[w] = None
            if len(exits) < len(worker_ids):
                time.sleep(REMOTE_STOP_POLL_S)
        return exits
