"""A stopping worker's drain: what must be read to its end before it leaves, and the wait for it.

A draining worker has paused its input (streams.worker). It leaves once its
deployment's topics that lead back to it are read to their end by the groups
that read them (a sidekick's input, the steps after it) with nothing in flight
here. The wait is bounded by standing still, not by its length: it gives up
only after `WorkerSettings.drain_timeout_s` without progress.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from streams.lag import GroupLag
from streams.loop import StageLoop
from streams.settings import WorkerSettings
from streams.stage import StepCounters
from streams.stall import Stall
from streams.topics import TopicMap
from streams.worker_spec import WorkerSpec, group_id

log = logging.getLogger(__name__)

DRAIN_POLL_S = 0.05


class Drain:
    """Waits until one worker's deployment topics that lead back to it are drained;
    `input_topic` is the input it stops reading first, `backlog` what those topics held at
    the last look (None before the first)."""

    def __init__(self, spec: WorkerSpec, settings: WorkerSettings, topics: TopicMap) -> None:
        self.spec = spec
        self.settings = settings
        self.topic_map = topics
        self.input_topic = topics.input(spec.workspace, spec.pipeline).name
        self.backlog: int | None = None

    def partitions(self, reading: list[str]) -> dict[str, list[TopicPartition]]:
        """What must be read to its end before this worker may leave, by consumer group: the
        deployment's topics that lead back to it. A main worker's are the boundary topics
        around each sidekick step (the sidekick's input read by its group, the next span's
        by the main group); a sidekick's and a shadow worker's, the topics they read
        (`reading`) but its input."""
        spec, m = self.spec, self.topic_map
        if spec.role != "main":
            topics = {spec.group_id: [t for t in reading if t != self.input_topic]}
        else:
            topics = {}
            for start, _ in spec.layout.spans(len(spec.definition.steps)):
                if start > 0:
                    topics.setdefault(spec.group_id, []).append(
                        m.boundary(spec.workspace, spec.pipeline, spec.deployment, start).name
                    )
            for k in spec.sidekicks:
                topics.setdefault(
                    group_id(spec.workspace, spec.pipeline, "sidekick", k), []
                ).append(m.boundary(spec.workspace, spec.pipeline, spec.deployment, k).name)
        partitions = {
            t.name: t.partitions
            for t in m.internal_topics(
                spec.workspace, spec.pipeline, spec.deployment, spec.definition, spec.sidekicks
            )
        }
        return {
            group: [TopicPartition(t, p) for t in names for p in range(partitions[t])]
            for group, names in topics.items()
            if names
        }

    async def wait(self, loop: StageLoop, counters: StepCounters) -> None:
        """Return once drained; TimeoutError after `drain_timeout_s` without progress (no
        record finished here, no change in what the groups have left in the topics)."""
        drained = self.partitions(loop.topics)
        offsets = GroupLag(self.settings) if drained else None
        if offsets is not None:
            await offsets.start()
        stall = Stall(self.settings.drain_timeout_s)
        left: int | None = None  # records in those topics their groups have not committed
        try:
            while not stall.seen((counters.finished, left)):
                if not loop.in_flight:
                    try:
                        left = self.backlog = (
                            0 if offsets is None else await offsets.unread(drained)
                        )
                    except KafkaError as exc:  # a busy broker: ask again (the stall bounds it)
                        log.warning(
                            "worker %s: reading the group's offsets failed: %s",
                            self.spec.worker_id,
                            exc,
                        )
                    if left == 0 and not loop.in_flight:
                        return
                await asyncio.sleep(DRAIN_POLL_S)
            raise TimeoutError(
                f"drain made no progress for {stall.still_s:.0f}s; "
                f"{'some' if left is None else left} records in this deployment's topics "
                f"will not be answered (raise WEIR_DRAIN_TIMEOUT_S to wait longer)"
            )
        finally:
            if offsets is not None:
                await offsets.stop()
