"""Micro-batching: small messages merged so a model runs vectorised, then split back.

Pure functions; no Kafka here. The worker's loop (streams.loop) decides which
messages arrive together.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import pyarrow as pa


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
    """What messages must share to be merged: their schema (hashed by pyarrow, fast)."""
    return batch.schema
