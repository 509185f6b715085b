"""Micro-batching: small messages merged so a model runs vectorised, then split back.

Pure functions plus one async generator; no Kafka here.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Sequence
from typing import TypeVar

import pyarrow as pa

T = TypeVar("T")


def plan_micro_batches(messages: Sequence[tuple[Hashable, int]], max_rows: int) -> list[list[int]]:
    """Group messages into micro-batches; returns lists of message indexes.

    `messages` holds each message's (schema key, row count) in arrival order.
    A message of `max_rows` rows or more (or of none) runs alone; smaller ones
    are merged, in order, with others of the same schema while the total stays
    within `max_rows`.
    """
    groups: list[list[int]] = []
    open_groups: dict[Hashable, tuple[list[int], list[int]]] = {}  # key -> (members, [rows])
    for index, (key, rows) in enumerate(messages):
        if rows >= max_rows or rows == 0:
            groups.append([index])
            continue
        current = open_groups.get(key)
        if current is None or current[1][0] + rows > max_rows:
            current = ([], [0])
            groups.append(current[0])
            open_groups[key] = current
        current[0].append(index)
        current[1][0] += rows
    return groups


def merge(batches: Sequence[pa.RecordBatch]) -> pa.RecordBatch:
    """One record batch holding the rows of `batches` (same schema) in order."""
    if len(batches) == 1:
        return batches[0]
    table = pa.Table.from_batches([b.replace_schema_metadata(None) for b in batches])
    return table.combine_chunks().to_batches()[0]


def split(batch: pa.RecordBatch, rows: Sequence[int]) -> list[pa.RecordBatch]:
    """`batch` cut back into consecutive pieces of `rows` rows (zero-copy slices)."""
    if sum(rows) != batch.num_rows:
        raise ValueError(f"cannot split {batch.num_rows} rows into pieces of {list(rows)}")
    pieces, offset = [], 0
    for n in rows:
        pieces.append(batch.slice(offset, n))
        offset += n
    return pieces


def schema_key(batch: pa.RecordBatch) -> Hashable:
    return tuple((f.name, str(f.type)) for f in batch.schema)


async def micro_batches(events: AsyncIterable[T], max_events: int,
                        wait_s: float) -> AsyncIterator[list[T]]:
    """`events` in micro-batches: each starts with the next event to come and takes
    what follows it for up to `wait_s`, or until it holds `max_events`.

    Unlike faust's `take_events`, an idle stream costs nothing: nothing wakes up
    until an event arrives. At most `max_events` events wait in the buffer, so a
    slow step holds the stream back rather than growing memory.
    """
    buffer: asyncio.Queue[tuple[T | None, BaseException | None]] = asyncio.Queue(max_events)
    ended = False

    async def feed() -> None:
        try:
            async for event in events:
                await buffer.put((event, None))
            await buffer.put((None, StopAsyncIteration()))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer of the batches
            await buffer.put((None, exc))

    def take(item: tuple[T | None, BaseException | None], batch: list[T]) -> None:
        nonlocal ended
        event, error = item
        if isinstance(error, StopAsyncIteration):
            ended = True
        elif error is not None:
            raise error
        else:
            batch.append(event)  # type: ignore[arg-type]

    feeder = asyncio.create_task(feed(), name="micro-batch-feeder")
    loop = asyncio.get_running_loop()
    try:
        while not ended:
            batch: list[T] = []
            take(await buffer.get(), batch)
            deadline = loop.time() + wait_s
            while len(batch) < max_events and not ended:
                if buffer.empty():
                    await asyncio.sleep(0)  # let the feeder hand on what is already fetched
                if not buffer.empty():
                    take(buffer.get_nowait(), batch)
                    continue
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    take(await asyncio.wait_for(buffer.get(), remaining), batch)
                except TimeoutError:
                    break
            if batch:
                yield batch
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
