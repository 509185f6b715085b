"""Coalescing: concurrent HTTP requests for one pipeline sent as one Kafka record.

While one record is being produced, the requests that arrive queue up; the next record
takes them in order, as many as fit in `max_rows` rows and share the first one's schema
(after waiting `linger_s` for more, if set). A lone request goes as it is, so at low load
nothing changes; under load one produce and one reply fetch serve many requests, as a
worker's micro-batches serve many messages. How the record is built and its replies split
back is the gateway's (`send`): this module only decides what goes together.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import pyarrow as pa

from control._replies import Group, Pending

log = logging.getLogger(__name__)


@dataclass
class Waiting:
    """A request queued to be sent; `sent` resolves once its record is on the broker."""

    request_id: str
    batch: pa.RecordBatch
    pending: Pending
    sent: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    group: Group | None = None
    """Set when it went with others in one record (`record_id`)."""
    record_id: str = ""


Send = Callable[[list[Waiting]], Awaitable[None]]


class Coalescer:
    """The send queue of one pipeline's input topic.

    Example:
        coalescer = Coalescer(send_record, max_rows=4096, linger_s=0.0)
        waiting = Waiting(request_id, batch, Pending(batch.num_rows, []))
        coalescer.submit(waiting)
        await waiting.sent
    """

    def __init__(self, send: Send, max_rows: int, linger_s: float) -> None:
        self._send = send
        self._max_rows = max_rows
        self._linger_s = linger_s
        self._queue: deque[Waiting] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def submit(self, waiting: Waiting) -> None:
        self._queue.append(waiting)
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="gateway-coalescer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._linger_s:
                await asyncio.sleep(self._linger_s)
            while self._queue:
                group = self.take()
                if not group:
                    continue
                try:
                    await self._send(group)
                except Exception as exc:  # each caller raises it: the next group still goes
                    for waiting in group:
                        if not waiting.sent.done():
                            waiting.sent.set_exception(exc)
                    continue
                for waiting in group:
                    if not waiting.sent.done():
                        waiting.sent.set_result(None)

    def take(self) -> list[Waiting]:
        """The next record's requests: the first in the queue, then those behind it with
        its schema while they fit in `max_rows` (callers that gave up are dropped)."""
        group: list[Waiting] = []
        rows = 0
        while self._queue:
            waiting = self._queue[0]
            if waiting.sent.done():  # its caller was cancelled
                self._queue.popleft()
                continue
            if group and (
                rows + waiting.batch.num_rows > self._max_rows
                or not waiting.batch.schema.equals(group[0].batch.schema)
            ):
                break
            group.append(self._queue.popleft())
            rows += waiting.batch.num_rows
        return group
