"""streams/log_rows.py: the log rows of a failed request, stored like any other rows."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from engine import codecs
from engine.answers import encode_answer
from engine.columns import META_ERROR, META_TRACEPARENT
from streams.log_rows import error_rows, json_result_rows, result_rows, with_row_ids
from streams.logstore import LogStore
from streams.messages import Envelope
from streams.shadow_logs import read_shadows, shadow_pipeline

ERROR = {
    "step": "pre",
    "model": "pre@12345678",
    "type": "StepFailed",
    "message": "step 'pre' failed: poison row",
    "attempts": "3",
}


def test_a_failed_request_gets_one_row_per_input_row_with_the_error(tmp_path: Path) -> None:
    carried = pa.RecordBatch.from_pydict({"in.x": [1.0, 2.0]})
    env = Envelope(request_id="r1", version="v1", started_ns=1_000_000, error=ERROR)
    batch = error_rows(env, codecs.encode(carried, codecs.ARROW_STREAM), time_ms=5)
    assert batch.column("request_id").to_pylist() == ["r1", "r1"]
    assert batch.column("row").to_pylist() == [0, 1]
    assert batch.column("in.x").to_pylist() == [1.0, 2.0]
    assert batch.column("anomaly.count").to_pylist() == [1, 1]
    assert batch.column("metadata.model").to_pylist() == ["pre@12345678"] * 2
    assert batch.column("metadata.elapsed_ns").to_pylist() == [4_000_000] * 2
    assert "poison row" in batch.column(META_ERROR)[0].as_py()

    store = LogStore(tmp_path)
    store.append("ws", "p", batch)
    failed = store.query("ws", "p", valid=False)
    assert failed.num_rows == 2 and failed.column(META_ERROR)[0].as_py().startswith("StepFailed")


def test_an_unreadable_request_gets_one_row(tmp_path: Path) -> None:
    env = Envelope(request_id="r2", version="v1", error=ERROR)
    batch = error_rows(env, b"", time_ms=5)
    assert batch.num_rows == 1 and batch.column("row").to_pylist() == [0]
    LogStore(tmp_path).append("ws", "p", batch)


def test_rows_of_a_part_of_a_request_keep_their_place_in_it() -> None:
    part = pa.RecordBatch.from_pydict(
        {"out.y": [1.0, 2.0], "metadata.row": pa.array([3, 7], pa.int32())}
    )
    assert with_row_ids(part, "r1").column("row").to_pylist() == [3, 7]
    carried = pa.RecordBatch.from_pydict(
        {"in.x": [1.0, 2.0], "_meta.row": pa.array([4, 9], pa.int32())}
    )
    env = Envelope(request_id="r1", version="v1", error=ERROR)
    failed = error_rows(env, codecs.encode(carried, codecs.ARROW_STREAM), time_ms=5)
    assert failed.column("row").to_pylist() == [4, 9]
    assert "_meta.row" not in failed.schema.names


def test_a_challengers_failure_is_logged_as_that_challengers(tmp_path: Path) -> None:
    env = Envelope(request_id="r1", version="v1", error=ERROR, shadow="chal")
    batch = error_rows(env, b"", time_ms=5)
    assert batch.column("metadata.shadow").to_pylist() == ["chal"]
    store = LogStore(tmp_path)
    store.append("ws", shadow_pipeline("p", "chal"), batch)
    store.append(
        "ws",
        shadow_pipeline("p", "other"),
        batch.set_column(
            batch.schema.get_field_index("metadata.shadow"), "metadata.shadow", pa.array(["other"])
        ),
    )
    both = read_shadows(store, "ws", "p")  # one row per challenger, though the keys are equal
    assert sorted(both.column("metadata.shadow").to_pylist()) == ["chal", "other"]
    assert read_shadows(store, "ws", "q").num_rows == 0


def test_results_converted_in_bulk_are_the_rows_each_would_give_alone() -> None:
    def message(values: list[float], version: str, rows: list[int] | None) -> pa.RecordBatch:
        columns = {
            "out.y": pa.array(values),
            "metadata.pipeline_version": codecs.repeated(version, len(values)),
        }
        if rows is not None:
            columns["metadata.row"] = pa.array(rows, pa.int32())
        return pa.RecordBatch.from_pydict(columns)

    results = [
        (message([1.0, 2.0], "v1", [0, 1]), "a"),
        (message([3.0], "v2", [5]), "b"),
        (message([4.0, 5.0, 6.0], "v1", None), "c"),
        (message([7.0], "v2", None), "d"),
    ]
    encoded = [(codecs.encode(batch, codecs.ARROW_STREAM), rid, None) for batch, rid in results]
    bulk = [row for batch in result_rows(encoded) for row in batch.to_pylist()]
    alone = [
        row
        for batch, rid in results
        for row in with_row_ids(codecs.without_dictionaries(batch), rid).to_pylist()
    ]
    assert bulk == alone
    assert [(r["request_id"], r["row"]) for r in bulk] == [
        ("a", 0),
        ("a", 1),
        ("b", 5),
        ("c", 0),
        ("c", 1),
        ("c", 2),
        ("d", 0),
    ]


def test_an_unreadable_result_is_skipped_and_the_others_keep_their_request_ids() -> None:
    def value(x: float) -> bytes:
        return codecs.encode(pa.RecordBatch.from_pydict({"out.y": [x]}), codecs.ARROW_STREAM)

    results = [
        (value(1.0), "a", None),
        (b"garbage", "b", None),
        (value(2.0), "c", None),
        (value(3.0), "d", None),
    ]
    rows = [row for batch in result_rows(results) for row in batch.to_pylist()]
    assert [(r["request_id"], r["out.y"]) for r in rows] == [("a", 1.0), ("c", 2.0), ("d", 3.0)]


def test_rows_of_traced_requests_carry_their_traceparent() -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    value = codecs.encode(pa.RecordBatch.from_pydict({"out.y": [1.0, 2.0]}), codecs.ARROW_STREAM)
    rows = [
        row
        for batch in result_rows([(value, "a", trace), (value, "b", None)])
        for row in batch.to_pylist()
    ]
    assert [(r["request_id"], r[META_TRACEPARENT]) for r in rows] == [
        ("a", trace),
        ("a", trace),
        ("b", None),
        ("b", None),
    ]
    untraced = result_rows([(value, "c", None)])[0]
    assert META_TRACEPARENT not in untraced.schema.names
    failed = Envelope(
        request_id="d",
        error={"type": "E", "step": "s", "message": "m"},
        extra={"traceparent": trace.encode()},
    )
    assert error_rows(failed, None, 0).column(META_TRACEPARENT).to_pylist() == [trace]


def test_a_coalesced_records_rows_are_logged_under_each_requests_own_id_and_row() -> None:
    def part(rows: list[int]) -> bytes:
        return codecs.encode(
            pa.RecordBatch.from_pydict(
                {"out.y": [float(r) for r in rows], "metadata.row": pa.array(rows, pa.int32())}
            ),
            codecs.ARROW_STREAM,
        )

    requests = (("a", 2), ("b", 1), ("c", 2))
    # A split answers the record in two parts; a plain result sits between them.
    results = [
        (part([0, 3, 4]), requests, None),
        (part([0]), "alone", None),
        (part([1, 2]), requests, None),
    ]
    rows = [row for batch in result_rows(results) for row in batch.to_pylist()]
    assert [(r["request_id"], r["row"], r["out.y"]) for r in rows] == [
        ("a", 0, 0.0),
        ("c", 0, 3.0),
        ("c", 1, 4.0),
        ("alone", 0, 0.0),
        ("a", 1, 1.0),
        ("b", 0, 2.0),
    ]


def test_a_failed_coalesced_record_logs_each_requests_rows_as_its_own() -> None:
    carried = pa.RecordBatch.from_pydict({"in.x": [1.0, 2.0, 3.0]})
    env = Envelope(request_id="whole", version="v1", error=ERROR, requests=(("a", 1), ("b", 2)))
    batch = error_rows(env, codecs.encode(carried, codecs.ARROW_STREAM), time_ms=5)
    assert list(zip(batch.column("request_id").to_pylist(), batch.column("row").to_pylist())) == [
        ("a", 0),
        ("b", 0),
        ("b", 1),
    ]


def _result(n: int) -> pa.RecordBatch:
    """Result rows as `CompiledPipeline.finish` writes them."""
    return pa.RecordBatch.from_pydict(
        {
            "time": pa.array([1_700_000_000_123] * n).view(pa.timestamp("ms", tz="UTC")),
            "in.x": pa.array([[float(i), 0.5] for i in range(n)], pa.list_(pa.float32(), 2)),
            "in.raw": pa.array([bytes([i, 255]) for i in range(n)]),
            "out.y": pa.array([0.25 * i for i in range(n)], pa.float32()),
            "check_failures": pa.array([0] * n, pa.int32()),
            "anomaly.count": pa.array([0] * n, pa.int32()),
            "anomaly.positive": pa.array([False] * n),
            "metadata.pipeline_version": codecs.repeated("v1", n),
            "metadata.model": codecs.repeated("m@1", n),
            "metadata.elapsed_ns": pa.array([12_345] * n, pa.int64()),
            "metadata.row": pa.array(range(n), pa.int32()),
        }
    )


def test_a_json_answer_is_logged_as_the_rows_its_arrow_form_gives(tmp_path: Path) -> None:
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    result = _result(3)
    [arrow] = result_rows([(codecs.encode(result, codecs.ARROW_STREAM), "a", trace)])
    value, named = encode_answer(result, codecs.PANDAS_RECORDS)
    env = Envelope(
        request_id="a",
        content_type=codecs.PANDAS_RECORDS,
        base64_columns=named,
        extra={"traceparent": trace.encode()},
    )
    from_json = json_result_rows(env, value)
    assert from_json is not None
    assert from_json.schema.names == arrow.schema.names
    # JSON has one kind of number: float32 comes back float64, list sizes unfixed.
    widened = {"in.x": pa.list_(pa.float64()), "out.y": pa.float64()}
    assert {f.name: widened.get(f.name, f.type) for f in arrow.schema} == {
        f.name: f.type for f in from_json.schema
    }
    assert from_json.to_pylist() == arrow.to_pylist()
    store = LogStore(tmp_path)  # and the store takes both
    store.append("ws", "p", arrow)
    store.append("ws", "p", from_json)


def test_a_json_error_reply_logs_its_carried_input() -> None:
    carried = pa.RecordBatch.from_pydict({"in.x": [1.0, 2.0], "in.raw": [b"\x00", b"\x01"]})
    value, named = encode_answer(carried, codecs.PANDAS_RECORDS)
    env = Envelope(
        request_id="r1",
        version="v1",
        error=ERROR,
        content_type=codecs.PANDAS_RECORDS,
        base64_columns=named,
    )
    batch = error_rows(env, value, time_ms=5)
    assert batch.column("in.x").to_pylist() == [1.0, 2.0]
    assert batch.column("in.raw").to_pylist() == [b"\x00", b"\x01"]


def test_an_unreadable_json_answer_is_skipped() -> None:
    env = Envelope(request_id="a", content_type=codecs.PANDAS_RECORDS)
    assert json_result_rows(env, b"[{") is None
