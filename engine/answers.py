"""A request's answer in the content type it is written in on the result topic.

A request produced as JSON (pandas records) is answered in JSON, any other in Arrow,
unless the deployment's `result_format` names one for every answer (`reply_type`).
JSON answers are strict: NaN and infinities are null, times ISO text, and binary
values base64 text, their columns named beside the answer (a header on Kafka).
`decode_answer` reads either kind back with the result columns' own types, so a
JSON answer gives the log store the rows an Arrow one does, as far as JSON can
say them (a float32 comes back a float64, NaN a null).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any, Final, Literal, NamedTuple, get_args

import pyarrow as pa

from engine import _json_records, codecs
from engine.content_types import ARROW_STREAM, PANDAS_RECORDS, ContentType
from engine.errors import CodecError
from engine.columns import (
    ANOMALY_COUNT,
    CHECK_FAILURES,
    META_ELAPSED,
    META_MODEL,
    META_ROW,
    META_SHADOW,
    META_VERSION,
    TIME,
    TIME_TYPE,
)

ResultFormat = Literal["request", "arrow", "json"]
"""How a deployment answers: in each request's own format, or always Arrow or JSON."""
RESULT_FORMATS: Final[tuple[str, ...]] = get_args(ResultFormat)

_RESULT_TYPES: dict[str, pa.DataType] = {
    CHECK_FAILURES: pa.int32(),
    ANOMALY_COUNT: pa.int32(),
    META_VERSION: pa.string(),
    META_MODEL: pa.string(),
    META_ELAPSED: pa.int64(),
    META_ROW: pa.int32(),
    META_SHADOW: pa.string(),
}
"""The types of the columns every result has (`CompiledPipeline.finish`), but `time`."""


def reply_type(result_format: ResultFormat, request_type: ContentType) -> ContentType:
    """The content type a request of `request_type` is answered in."""
    if result_format == "json" or (result_format == "request" and request_type == PANDAS_RECORDS):
        return PANDAS_RECORDS
    return ARROW_STREAM


class EncodedAnswer(NamedTuple):
    value: bytes
    base64_columns: tuple[str, ...] = ()
    """The columns of a JSON answer whose binary values are written as base64 text."""


def encode_answer(batch: pa.RecordBatch, content_type: ContentType) -> EncodedAnswer:
    """An answer's rows as bytes of `content_type`.

    :raises CodecError: a column holds values JSON has no form for, naming it.
    """
    if content_type != PANDAS_RECORDS:
        return EncodedAnswer(codecs.encode(batch, content_type))
    [found] = encode_json_answers(batch, [batch.num_rows])
    if isinstance(found, CodecError):
        raise found
    return found


def encode_json_answers(
    batch: pa.RecordBatch, rows: Sequence[int]
) -> list[EncodedAnswer | CodecError]:
    """Consecutive pieces of `batch`, of `rows` rows each, as JSON answers (the columns
    converted once for all); a piece JSON cannot hold gets the CodecError that says why and
    what to do instead."""
    return [
        EncodedAnswer(*found)
        if not isinstance(found, CodecError)
        else CodecError(
            f"the answer cannot be JSON: {found}; or have the pipeline answer in Arrow "
            "(DeploymentConfigBuilder().result_format('arrow'))"
        )
        for found in _json_records.encode_answers(batch, rows)
    ]


def decode_answer(
    value: bytes, content_type: str, base64_columns: Sequence[str] = ()
) -> pa.RecordBatch:
    """An answer's rows, from either content type, with the result columns' types (a JSON
    answer's base64 columns back as bytes).

    :raises CodecError: the value is not of `content_type`, or a column cannot be read back.
    """
    batch = codecs.decode(value, content_type)
    if codecs.normalize_content_type(content_type) != PANDAS_RECORDS:
        return batch
    columns = []
    for name, column in zip(batch.schema.names, batch.columns):
        try:
            columns.append(_typed(name, column, name in base64_columns))
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise CodecError(
                f"column {name!r} of a JSON answer cannot be read back ({exc}); "
                "was it written by weir?"
            ) from exc
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _typed(name: str, column: pa.Array, base64_text: bool) -> pa.Array:
    if name == TIME:  # ISO text with microseconds: read at that precision, then to ms
        return column.cast(pa.timestamp("us", tz="UTC")).cast(TIME_TYPE)
    if name in _RESULT_TYPES:
        return column.cast(_RESULT_TYPES[name])
    if base64_text:
        return pa.array(_bytes(column.to_pylist()))
    return column


def _bytes(value: Any) -> Any:
    """Base64 text, at any depth of lists and objects, as bytes."""
    if isinstance(value, str):
        return base64.b64decode(value, validate=True)
    if isinstance(value, list):
        return [_bytes(item) for item in value]
    if isinstance(value, dict):
        return {key: _bytes(item) for key, item in value.items()}
    return value
