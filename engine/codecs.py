"""Codecs: every conversion between wire bytes, numpy, pandas and Arrow record batches.

Arrow is the currency: ``decode`` turns a payload into one ``pa.RecordBatch`` and
``encode`` turns one back into bytes, keyed by content type. This module is the
public face; each concept has its own module beside it: content types
(engine.content_types), the Arrow IPC codec (engine._arrow_ipc), the
pandas-records JSON codec (engine._json_records) and numpy columns
(engine._columns). The pandas helpers below are the only place weir converts to
or from pandas.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pyarrow as pa

from engine import _arrow_ipc, _json_records
from engine._arrow_ipc import DecodedRun, decode_many, encode_many, repeated, without_dictionaries
from engine._columns import (
    batch_from_arrays,
    batch_to_arrays,
    column_to_ndarray,
    column_values,
    from_columns,
    ndarray_to_column,
    rows_to_column,
)
from engine._json_records import json_values
from engine.content_types import (
    ARROW_FILE,
    ARROW_STREAM,
    PANDAS_RECORDS,
    ContentType,
    normalize_content_type,
)
from engine.errors import CodecError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ARROW_FILE",
    "ARROW_STREAM",
    "PANDAS_RECORDS",
    "TENSOR_COLUMN",
    "ContentType",
    "DecodedRun",
    "batch_from_arrays",
    "batch_from_pandas",
    "batch_to_arrays",
    "batch_to_pandas",
    "column_to_ndarray",
    "column_values",
    "decode",
    "decode_many",
    "encode",
    "encode_many",
    "json_values",
    "ndarray_to_column",
    "normalize_content_type",
    "repeated",
    "rows_to_column",
    "to_record_batch",
    "without_dictionaries",
]

TENSOR_COLUMN: Final = "tensor"
"""A pipeline input's one column may carry this name whatever the first model calls its input
(the guide's `in.tensor`); a numpy array given as input becomes a column of this name."""


def decode(payload: bytes, content_type: str, *, dictionaries: bool = False) -> pa.RecordBatch:
    """Decode a payload into one record batch; several Arrow batches are joined into one.

    JSON must be a list of row objects (or an object of column lists); nested lists
    become list columns. Dictionary-encoded columns come back plain unless
    `dictionaries` is set (for a caller that decodes many batches at once, later, with
    `without_dictionaries`).
    """
    kind = normalize_content_type(content_type)
    if kind == PANDAS_RECORDS:
        return _json_records.decode(payload)
    return _arrow_ipc.decode(payload, kind, dictionaries=dictionaries)


def encode(batch: pa.RecordBatch, content_type: str) -> bytes:
    """Encode one record batch as bytes of the given content type.

    JSON output is strict: NaN and infinities become null, times become ISO text.
    """
    kind = normalize_content_type(content_type)
    if kind == PANDAS_RECORDS:
        return _json_records.encode(batch)
    return _arrow_ipc.encode(batch, kind)


def batch_from_pandas(df: pd.DataFrame) -> pa.RecordBatch:
    """Build a record batch from a DataFrame, dropping its index; list cells become list columns."""
    try:
        return pa.RecordBatch.from_pandas(df, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise CodecError(
            f"cannot convert DataFrame ({exc}): every column must hold one type, "
            "and list cells must be one-dimensional"
        ) from exc


def batch_to_pandas(batch: pa.RecordBatch) -> pd.DataFrame:
    """Turn a record batch into a DataFrame; list columns give numpy-array cells."""
    return batch.to_pandas()


def to_record_batch(data: Any) -> pa.RecordBatch:
    """Turn any supported table-like value into one record batch.

    Accepts a ``pa.RecordBatch``, a ``pa.Table``, a pandas DataFrame, a list of row
    dicts, a dict of columns (lists or numpy arrays), or a numpy array with rows first
    (one column, named ``TENSOR_COLUMN``).
    """
    if isinstance(data, pa.RecordBatch):
        return data
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise CodecError("a numpy array needs a first axis of rows; got a scalar")
        return batch_from_arrays({TENSOR_COLUMN: data})
    if isinstance(data, pa.Table):
        return _arrow_ipc.combine(data.to_batches(), data.schema)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(data, pandas.DataFrame):
        return batch_from_pandas(data)
    if isinstance(data, list):
        return _json_records.from_rows(data)
    if isinstance(data, Mapping):
        return from_columns(data)
    raise CodecError(
        f"cannot make a record batch from {type(data).__name__}: pass a pyarrow "
        "RecordBatch or Table, a pandas DataFrame, a list of row dicts, a dict of columns "
        "or a numpy array with rows first"
    )
