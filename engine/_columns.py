"""Columns to and from numpy arrays: tensors (one shape per row) and ragged rows (one array
per row); and record batches built from named columns (engine.codecs is the public face)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine._arrow_ipc import ARROW_ERRORS
from engine.errors import CodecError

_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)
_NUMERIC = (pa.types.is_integer, pa.types.is_floating, pa.types.is_boolean, pa.types.is_decimal)
_JSON_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def column_to_ndarray(column: pa.Array | pa.ChunkedArray, *, name: str = "column") -> np.ndarray:
    """Turn a column into an array of shape (N,), or (N, d1, d2, ...) for (nested) list columns.

    :raises CodecError: rows differ in shape (see `column_values` for such columns), or
        numeric data holds nulls.
    """
    found = column_values(column, name=name)
    if isinstance(found, list):
        lengths = [len(row) for row in found]
        raise CodecError(
            f"the codec refused column {name!r}: rows of column {name!r} have lengths "
            f"{min(lengths)} and {max(lengths)}; every "
            "row must have the same shape to make one tensor (weir never pads: make the rows "
            "one shape in a Python step, which takes such a column as one array per row)"
        )
    return found


def column_values(
    column: pa.Array | pa.ChunkedArray, *, name: str = "column"
) -> np.ndarray | list[np.ndarray]:
    """A column as one array (see `column_to_ndarray`) when its rows share a shape, else as
    one array per row: a ragged column (file bytes, audio, token ids of varying lengths).

    :raises CodecError: a row is itself ragged (it cannot be one array), or nulls.
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    shape = [len(values)]
    while any(is_type(values.type) for is_type in _LISTS):
        if values.null_count:
            raise CodecError(f"column {name!r} has null rows; fill or drop them")
        if pa.types.is_fixed_size_list(values.type):
            size = values.type.list_size
            # The child values of these rows (flatten() goes through pyarrow.compute: slower).
            values = values.values.slice(values.offset * size, len(values) * size)
        else:
            lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
            if len(shape) == 1 and lengths.size and lengths.min() != lengths.max():
                return _ragged_rows(values.flatten(), lengths, name)
            if lengths.size and lengths.min() != lengths.max():
                raise CodecError(
                    f"the codec refused column {name!r}: its rows hold lists of lengths "
                    f"{lengths.min()} and {lengths.max()} below the first level; each row must "
                    "be one array (rows may differ in shape, but not within a row)"
                )
            size = int(lengths[0]) if lengths.size else 0
            values = values.flatten()
        shape.append(size)
    if values.null_count and any(is_type(values.type) for is_type in _NUMERIC):
        raise CodecError(f"column {name!r} has null values; fill or drop them")
    array: np.ndarray = values.to_numpy(zero_copy_only=False).reshape(shape)
    return array


def _ragged_rows(items: pa.Array, lengths: np.ndarray, name: str) -> list[np.ndarray]:
    """Rows of a list column whose lengths differ: each a view of the items' one array."""
    inner = column_values(items, name=name)
    if isinstance(inner, list):
        raise CodecError(
            f"the codec refused column {name!r}: the items of its rows differ in shape; each "
            "row must be one array (rows may differ in shape, but not within a row)"
        )
    return np.split(inner, np.cumsum(lengths)[:-1])


def rows_to_column(rows: Sequence[np.ndarray], *, name: str = "column") -> pa.Array:
    """One array per row, of one dtype and trailing shape but any length, as a list column
    (`column_values` inverts it)."""
    arrays = [np.asarray(row) for row in rows]
    if not arrays:
        return pa.array([], pa.list_(pa.null()))
    kinds = {(a.dtype, a.shape[1:]) for a in arrays if a.ndim}
    if len(kinds) > 1 or any(a.ndim == 0 for a in arrays):
        found = ", ".join(f"{dtype} {list(trailing)}" for dtype, trailing in sorted(kinds, key=str))
        raise CodecError(
            f"column {name!r} is one array per row, but they differ in more than their first "
            f"dimension (dtype and trailing shape: {found or 'scalars'}); return rows of one "
            "dtype whose shapes differ only in length"
        )
    items = ndarray_to_column(np.concatenate(arrays))
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in arrays])])
    offset_type = pa.int32() if offsets[-1] < 2**31 else pa.int64()
    list_type = pa.ListArray if offset_type == pa.int32() else pa.LargeListArray
    return list_type.from_arrays(pa.array(offsets, offset_type), items)


def ndarray_to_column(array: np.ndarray) -> pa.Array:
    """Turn an array of shape (N,) or (N, d1, ...) into a column, zero-copy where possible.

    Extra dimensions become nested ``fixed_size_list``s; ``column_to_ndarray`` inverts it.
    """
    array = np.asarray(array)
    if array.ndim == 0:
        raise CodecError("a column needs at least one dimension (rows); got a scalar")
    try:
        column = pa.array(np.ascontiguousarray(array).reshape(-1))
        for depth in range(array.ndim - 1, 0, -1):
            rows = math.prod(array.shape[:depth])
            column = pa.Array.from_buffers(
                pa.list_(column.type, array.shape[depth]), rows, [None], children=[column]
            )
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise CodecError(
            f"cannot make a column of an array of shape {array.shape} and dtype "
            f"{array.dtype} ({exc}): use numbers, bools or strings of one type, "
            "and dimensions Arrow can hold"
        ) from exc
    return column


def batch_from_arrays(arrays: Mapping[str, np.ndarray | list[np.ndarray]]) -> pa.RecordBatch:
    """Build a record batch from named numpy arrays of shape (N,) or (N, d1, ...) sharing N;
    a list of N arrays (one per row, lengths may differ) becomes a list column."""
    return from_columns(arrays)


def batch_to_arrays(
    batch: pa.RecordBatch, *, ragged: bool = False
) -> dict[str, np.ndarray | list[np.ndarray]]:
    """Turn every column of a record batch into a numpy array (see ``column_to_ndarray``).

    With `ragged`, a column whose rows differ in shape becomes a list of arrays, one per row
    (``column_values``); without, it raises CodecError.
    """
    convert = column_values if ragged else column_to_ndarray
    return {name: convert(batch.column(i), name=name) for i, name in enumerate(batch.schema.names)}


def from_columns(columns: Mapping[str, Any]) -> pa.RecordBatch:
    """Build a batch from column lists (or numpy arrays) that all have one value per row."""
    arrays: list[pa.Array] = []
    for name, values in columns.items():
        if isinstance(values, (np.ndarray, np.generic)):
            arrays.append(ndarray_to_column(np.asarray(values)))
            continue
        if isinstance(values, list) and values and all(isinstance(v, np.ndarray) for v in values):
            arrays.append(rows_to_column(values, name=str(name)))
            continue
        if isinstance(values, dict):  # pandas "columns" orient: {"col": {"0": v, "1": v}}
            values = list(values.values())
        if not isinstance(values, list):
            raise CodecError(
                f"column {name!r} is {kind(values)}: expected a list of values, "
                'e.g. {"x": [1.0, 2.0]}'
            )
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise CodecError(
                f"column {name!r} has inconsistent types ({exc}); every row must hold the same type"
            ) from exc
    lengths = {name: len(array) for name, array in zip(columns, arrays)}
    if len(set(lengths.values())) > 1:
        raise CodecError(
            f"columns have different lengths {lengths}; every column needs one value per row"
        )
    try:
        return pa.RecordBatch.from_arrays(arrays, names=[str(name) for name in columns])
    except ARROW_ERRORS as exc:
        raise CodecError(f"cannot build a record batch ({exc})") from exc


def kind(value: Any) -> str:
    """Name a parsed JSON value's type the way a user would, e.g. 'a number'."""
    return _JSON_KINDS.get(type(value), f"a {type(value).__name__}")
