"""A pipeline's log policy: what its log rows keep, so the log store stays bounded.

An image or audio pipeline's inputs are most of its rows' bytes, and every log row would
store them again. The policy leaves named input fields out of the logs entirely, and,
in a row over `max_row_bytes`, drops its largest `in.*` values (null in that row) until
it fits, naming them in the row's `metadata.dropped` (as Wallaroo does). Outputs,
metadata and check results are always kept.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from engine.columns import IN_PREFIX, META_DROPPED

DEFAULT_MAX_ROW_BYTES = 64 * 1024
"""A tabular row is a few hundred bytes; a 224x224 RGB image alone is 150 KB."""


class LogPolicy(BaseModel):
    """What a pipeline's log rows keep (part of its deployment's config).

    Example: `LogPolicy(max_row_bytes=16_384, exclude=["png"])`.
    """

    model_config = ConfigDict(frozen=True)

    max_row_bytes: int | None = Field(DEFAULT_MAX_ROW_BYTES, gt=0)
    """A row bigger than this (its values' bytes, uncompressed) loses its largest input
    values until it fits, named in `metadata.dropped`; None: no limit."""
    exclude: list[str] = []
    """Input fields never logged, as sent (`"png"`) or as logged (`"in.png"`)."""

    def apply(self, rows: pa.RecordBatch) -> pa.RecordBatch:
        """Log rows as this policy keeps them."""
        excluded = {
            name if name.startswith(IN_PREFIX) else IN_PREFIX + name for name in self.exclude
        }
        rows = rows.drop_columns([n for n in rows.schema.names if n in excluded])
        if self.max_row_bytes is None or rows.nbytes <= self.max_row_bytes:
            return rows  # no row can be over (most batches of tabular rows)
        return _drop_largest_inputs(rows, self.max_row_bytes)


def _drop_largest_inputs(rows: pa.RecordBatch, limit: int) -> pa.RecordBatch:
    names = rows.schema.names
    sizes = {name: row_bytes(column) for name, column in zip(names, rows.columns)}
    over = sum(sizes.values(), np.zeros(rows.num_rows, np.int64)) - limit  # > 0: must shrink
    inputs = [n for n in names if n.startswith(IN_PREFIX)]
    if not inputs or not (over > 0).any():
        return rows
    by_input = np.stack([sizes[n] for n in inputs], axis=1)
    order = np.argsort(-by_input, axis=1, kind="stable")  # each row's inputs, largest first
    freed = np.cumsum(np.take_along_axis(by_input, order, axis=1), axis=1)
    enough = freed >= over[:, None]
    count = np.where(enough.any(axis=1), enough.argmax(axis=1) + 1, len(inputs))
    count[over <= 0] = 0
    dropped = np.argsort(order, axis=1) < count[:, None]  # [row, input]: left out
    for k, name in enumerate(inputs):
        if dropped[:, k].any():
            column = rows.column(name)
            index = names.index(name)
            rows = rows.set_column(
                index,
                name,
                pc.if_else(pa.array(dropped[:, k]), pa.nulls(rows.num_rows, column.type), column),
            )
    listed = pa.array(
        [[inputs[k] for k in np.flatnonzero(row)] for row in dropped], pa.list_(pa.string())
    )
    if META_DROPPED in names:
        return rows.set_column(names.index(META_DROPPED), META_DROPPED, listed)
    return rows.append_column(META_DROPPED, listed)


def row_bytes(column: pa.Array) -> np.ndarray:
    """Each row's bytes in `column` (its values, uncompressed; a null row counts nothing)."""
    n = len(column)
    kind = column.type
    if pa.types.is_dictionary(kind):
        return row_bytes(column.dictionary_decode())
    if (
        pa.types.is_binary(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_large_string(kind)
    ):
        sizes = pc.binary_length(column)
    elif (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        width = _fixed_width(kind.value_type)
        if width is not None and column.values.null_count == 0:
            # A tensor column: its rows' lengths times the value width, not a pass over
            # every value (~11 ms for a 256-row message of 512 floats).
            lengths = pc.fill_null(pc.list_value_length(column), 0)
            tensor: np.ndarray = lengths.to_numpy(zero_copy_only=False).astype(np.int64) * width
            return tensor
        parents = pc.list_parent_indices(column).to_numpy()
        return np.bincount(parents, weights=row_bytes(pc.list_flatten(column)), minlength=n).astype(
            np.int64
        )
    elif (width := _fixed_width(kind)) is not None:  # numbers, times, bools
        if column.null_count == 0:  # the usual case: no mask to build (~20x faster)
            return np.full(n, width, np.int64)
        return np.where(column.is_null().to_numpy(zero_copy_only=False), 0, width).astype(np.int64)
    else:  # structs, maps and the like: their share of the column's bytes
        return np.full(n, column.nbytes // max(n, 1), np.int64)
    filled: np.ndarray = pc.fill_null(sizes, 0).to_numpy(zero_copy_only=False).astype(np.int64)
    return filled


def _fixed_width(kind: pa.DataType) -> int | None:
    """Bytes of one value of a fixed-width type (numbers, times, bools: 1); None for others."""
    if pa.types.is_dictionary(kind) or kind.num_fields:
        return None
    try:
        bits = kind.bit_width
    except ValueError:  # strings, binaries, nulls
        return None
    return max(bits // 8, 1) if bits > 0 else None
