"""engine/answers.py: what a request is answered in, and JSON answers written and read back."""

from __future__ import annotations

import datetime
import json
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from engine.answers import decode_answer, encode_answer, encode_json_answers, reply_type
from engine.codecs import ARROW_FILE, ARROW_STREAM, PANDAS_RECORDS, decode
from engine.errors import CodecError


@pytest.mark.parametrize(
    ("result_format", "request_type", "expected"),
    [
        ("request", PANDAS_RECORDS, PANDAS_RECORDS),
        ("request", ARROW_STREAM, ARROW_STREAM),
        ("request", ARROW_FILE, ARROW_STREAM),  # Arrow on Kafka is a stream
        ("arrow", PANDAS_RECORDS, ARROW_STREAM),
        ("json", ARROW_STREAM, PANDAS_RECORDS),
        ("json", PANDAS_RECORDS, PANDAS_RECORDS),
    ],
)
def test_a_request_is_answered_in_its_own_format_unless_the_deployment_says(
    result_format: str, request_type: str, expected: str
) -> None:
    assert reply_type(result_format, request_type) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("column", "written"),
    [
        (pa.array([1, None], pa.int8()), [1, None]),
        (pa.array([2**63 + 1, 0], pa.uint64()), [2**63 + 1, 0]),
        (pa.array([True, None]), [True, None]),
        (pa.array(["é", None]), ["é", None]),
        (pa.array([0.5, None], pa.float32()), [0.5, None]),
        (pa.array(np.array([1.5, np.nan], np.float16())), [1.5, None]),
        (pa.array([float("nan"), float("inf")]), [None, None]),  # JSON has no NaN: null
        (pa.array([[1.0, float("-inf")], None]), [[1.0, None], None]),
        (pa.array([[1, 2], [3, 4]], pa.list_(pa.int32(), 2)), [[1, 2], [3, 4]]),
        (pa.array([datetime.date(2024, 1, 2), None]), ["2024-01-02", None]),
        (pa.array([datetime.timedelta(seconds=90), None]), [90.0, None]),
        (pa.array([Decimal("1.25"), None]), [1.25, None]),
        (pa.array([{"p": 1.0, "q": "z"}, None]), [{"p": 1.0, "q": "z"}, None]),
        (pa.array([b"\x00\xff", None]), ["AP8=", None]),  # binary: base64 text
        (pa.array([b"ab", b"cd"], pa.binary(2)), ["YWI=", "Y2Q="]),
        (pa.array([[b"a"], []], pa.list_(pa.large_binary())), [["YQ=="], []]),
        (pa.array(["x", "x"]).dictionary_encode(), ["x", "x"]),
    ],
)
def test_each_type_is_written_as_strict_json(column: pa.Array, written: list[object]) -> None:
    value, _ = encode_answer(pa.record_batch({"c": column}), PANDAS_RECORDS)
    assert [row["c"] for row in json.loads(value)] == written


def test_binary_columns_are_named_and_read_back_as_bytes() -> None:
    batch = pa.record_batch(
        {
            "raw": pa.array([b"\x00\xff", None]),
            "nested": pa.array([[b"a"], [b"b", b"c"]]),
            "text": pa.array(["AP8=", "x"]),
        }
    )  # text that looks like base64
    value, named = encode_answer(batch, PANDAS_RECORDS)
    assert named == ("raw", "nested")
    assert decode_answer(value, PANDAS_RECORDS, named) == batch


def test_result_columns_are_read_back_in_their_own_types() -> None:
    batch = pa.record_batch(
        {
            "time": pa.array([1_700_000_000_123], pa.int64()).view(pa.timestamp("ms", tz="UTC")),
            "check_failures": pa.array([0], pa.int32()),
            "anomaly.count": pa.array([1], pa.int32()),
            "metadata.pipeline_version": ["v1"],
            "metadata.model": ["m@1"],
            "metadata.elapsed_ns": pa.array([5], pa.int64()),
            "metadata.row": pa.array([0], pa.int32()),
            "out.y": pa.array([0.5]),
        }
    )
    value, named = encode_answer(batch, PANDAS_RECORDS)
    assert json.loads(value)[0]["time"] == "2023-11-14T22:13:20.123000+00:00"
    assert decode_answer(value, PANDAS_RECORDS, named) == batch
    assert decode(value, PANDAS_RECORDS).column("time").type == pa.string()  # plain decode


def test_an_arrow_answer_is_the_arrow_codecs() -> None:
    batch = pa.record_batch({"x": pa.array([1.5], pa.float32())})
    value, named = encode_answer(batch, ARROW_STREAM)
    assert named == () and decode_answer(value, ARROW_STREAM) == batch


def test_an_empty_answer_is_an_empty_list() -> None:
    value, _ = encode_answer(pa.record_batch({"x": pa.array([], pa.float64())}), PANDAS_RECORDS)
    assert value == b"[]" and decode_answer(value, PANDAS_RECORDS).num_rows == 0


def test_an_answer_json_cannot_hold_fails_naming_the_column_and_the_way_out() -> None:
    ids = pa.array([b"0123456789abcdef"], pa.binary(16)).cast(pa.uuid())
    with pytest.raises(
        CodecError,
        match=r"column 'id' \(extension<arrow.uuid>\).*"
        r"result_format\('arrow'\)",
    ):
        encode_answer(pa.record_batch({"x": [1], "id": ids}), PANDAS_RECORDS)


def test_a_json_answer_that_does_not_read_back_says_which_column() -> None:
    with pytest.raises(CodecError, match="column 'raw' of a JSON answer"):
        decode_answer(b'[{"raw": "not base64!"}]', PANDAS_RECORDS, ["raw"])
    with pytest.raises(CodecError, match="column 'time'"):
        decode_answer(b'[{"time": "yesterday"}]', PANDAS_RECORDS)


def test_pieces_written_together_are_what_each_gives_alone() -> None:
    batch = pa.record_batch(
        {
            "x": pa.array([0.5, float("nan"), 2.0, 3.0, 4.0], pa.float32()),
            "raw": pa.array([b"a", b"b", None, b"d", b"e"]),
            "i": pa.array(range(5), pa.int32()),
        }
    )
    rows = [2, 0, 1, 2]
    together = encode_json_answers(batch, rows)
    starts = [0, 2, 2, 3]
    assert together == [
        encode_answer(batch.slice(at, n), PANDAS_RECORDS) for at, n in zip(starts, rows)
    ]
    assert json.loads(together[1].value) == []  # type: ignore[union-attr]


def test_pieces_json_cannot_hold_get_their_error_in_place() -> None:
    ids = pa.array([b"0123456789abcdef"] * 2, pa.binary(16)).cast(pa.uuid())
    found = encode_json_answers(pa.record_batch({"id": ids}), [1, 1])
    assert all(isinstance(f, CodecError) and "result_format('arrow')" in str(f) for f in found)
