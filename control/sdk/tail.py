"""Following a pipeline as rows arrive: its result topic (as `kcat -C` would), or its log rows.

Both are generators that run until closed (Ctrl-C in the CLI); each yields batches of rows
with the request id in `request_id` (error replies as a row per request with `error`).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import UnknownTopicOrPartitionError

from control.errors import StackError
from engine.columns import REQUEST_ID, ROW, TIME
from engine.answers import decode_answer
from engine.errors import CodecError
from streams.aiokafka_internals import topic_partitions
from streams.messages import Envelope

LATE = timedelta(minutes=1)
"""A log row's `time` is its request's start; it can land in the store this much later."""


def follow_results(
    bootstrap: str | None,
    topic: str,
    *,
    ready: Callable[[], None] = lambda: None,
    poll_ms: int = 500,
) -> Iterator[pa.RecordBatch]:
    """The answers on `topic` from now on, each as it arrives. `ready` is called once the
    consumer sits at the topic's end (anything sent after that is seen). Ends, after the
    consumer has stopped, with KeyboardInterrupt on Ctrl-C."""
    if not bootstrap:
        raise StackError(
            "following a result topic needs the Kafka bootstrap servers: run it "
            "where `weir up` runs, or set WEIR_KAFKA_BOOTSTRAP"
        )
    loop = asyncio.new_event_loop()
    interrupted = []
    # Ctrl-C while the consumer runs would be raised inside its tasks and leave them broken:
    # in the main thread, take it as a request to stop after the current poll instead.
    trap = threading.current_thread() is threading.main_thread()
    if trap:
        loop.add_signal_handler(signal.SIGINT, lambda: interrupted.append(True))
    try:
        consumer = loop.run_until_complete(_at_end(bootstrap, topic))
        try:
            ready()
            while not interrupted:
                records = loop.run_until_complete(consumer.getmany(timeout_ms=poll_ms))
                for messages in records.values():
                    for message in messages:
                        batch = _answer(Envelope.parse(message.headers), message.value or b"")
                        if batch is not None:
                            yield batch
        finally:
            loop.run_until_complete(consumer.stop())
    finally:
        if trap:
            loop.remove_signal_handler(signal.SIGINT)
        loop.close()
    raise KeyboardInterrupt


async def _at_end(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A started consumer of every partition of `topic`, at its end."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        fetch_max_wait_ms=100,
        request_timeout_ms=10_000,
    )
    await consumer.start()
    try:
        try:
            tps = await topic_partitions(consumer, topic)
        except UnknownTopicOrPartitionError:
            raise StackError(
                f"topic {topic!r} does not exist yet: deploy the pipeline first"
            ) from None
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now, so what is sent next is read
            await consumer.position(tp)
    except BaseException:
        await consumer.stop()
        raise
    return consumer


def _answer(env: Envelope, value: bytes) -> pa.RecordBatch | None:
    """A result record's rows with their request id; a challenger's answer is left out."""
    if env.shadow is not None:
        return None
    if env.error is not None:
        return pa.RecordBatch.from_pydict(
            {REQUEST_ID: [env.request_id], "error": [str(env.error.get("message"))]}
        )
    try:
        batch = decode_answer(value, env.content_type, env.base64_columns)
    except CodecError as exc:
        return pa.RecordBatch.from_pydict(
            {REQUEST_ID: [env.request_id], "error": [f"unreadable answer: {exc}"]}
        )
    ids = pa.array([env.request_id] * batch.num_rows, pa.string())
    return pa.RecordBatch.from_arrays(
        [ids, *batch.columns], names=[REQUEST_ID, *batch.schema.names]
    )


def follow_logs(
    read: Callable[[datetime, datetime], pa.Table],
    *,
    ready: Callable[[], None] = lambda: None,
    poll_s: float = 1.0,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Iterator[pa.Table]:
    """Log rows logged from now on, oldest first, each once. `read(start, end)` returns the
    newest rows in [start, end) (`Pipeline.logs` with a time range)."""
    since = now() - LATE
    seen: dict[tuple[str, int], datetime] = {}
    first = True
    while True:
        table = read(since, now() + LATE)
        fresh = (
            [
                i
                for i, key in enumerate(zip(table[REQUEST_ID].to_pylist(), table[ROW].to_pylist()))
                if key not in seen
            ]
            if table.num_rows
            else []
        )
        for i in fresh:
            seen[(table[REQUEST_ID][i].as_py(), table[ROW][i].as_py())] = table[TIME][i].as_py()
        if first:  # the first read only marks what was logged before
            ready()
        elif fresh:
            rows = table.take(pa.array(fresh))
            yield rows.take(
                pc.sort_indices(
                    rows, [(TIME, "ascending"), (REQUEST_ID, "ascending"), (ROW, "ascending")]
                )
            )
        first = False
        if seen:
            since = max(since, max(seen.values()) - LATE)
            seen = {k: t for k, t in seen.items() if t >= since}
        time.sleep(poll_s)


def log_reader(logs: Callable[..., Any], limit: int) -> Callable[[datetime, datetime], pa.Table]:
    """`Pipeline.logs` as `follow_logs` reads it."""

    def read(start: datetime, end: datetime) -> pa.Table:
        table: pa.Table = logs(limit=limit, start_datetime=start, end_datetime=end, arrow=True)
        return table

    return read
