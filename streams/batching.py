"""Micro-batching: small messages merged so a model runs vectorised, then split back.

Pure functions; no Kafka here. The worker's loop (streams.loop) decides which
messages arrive together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa


def plan_micro_batches(messages: Sequence[tuple[object, int]], max_rows: int) -> list[list[int]]:
    """Group messages into micro-batches; returns lists of message indexes.

    `messages` holds each message's (schema, row count) in arrival order; schemas are
    compared with `==`. A message of `max_rows` rows or more (or of none) runs alone;
    smaller ones are merged, in order, with others of the same schema while the total
    stays within `max_rows`.
    """
    groups: list[list[int]] = []
    # [schema, members, rows] of the group each schema fills now. A list, not a dict keyed
    # by schema: a fetch holds one or two schemas, and hashing a pyarrow schema costs ~5 us
    # per message (a tenth of a one-row message's work) where comparing one costs ~0.6.
    open_groups: list[list[Any]] = []
    for index, (schema, rows) in enumerate(messages):
        if rows >= max_rows or rows == 0:
            groups.append([index])
            continue
        current = next((g for g in open_groups if g[0] == schema), None)
        if current is None or current[2] + rows > max_rows:
            if current is not None:
                open_groups.remove(current)
            current = [schema, [], 0]
            groups.append(current[1])
            open_groups.append(current)
        current[1].append(index)
        current[2] += rows
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
