"""A stage without Kafka (streams/stage.py, streams/compute.py, streams/sinks.py): records in,
chunks run, the records to send out."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.answers import ResultFormat, decode_answer
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.errors import CodecError
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file
from streams.messages import (
    CONTENT_TYPE,
    ERROR,
    REQUEST_ID,
    SOURCE,
    VALUE_DROPPED,
    Envelope,
    Outgoing,
)
from streams.plan import Layout, worker_stages
from streams.settings import WorkerSettings
from streams.stage import Incoming, Stage, StepCounters
from streams.topics import TopicMap

SETTINGS = WorkerSettings(max_batch_rows=256, retry_backoff_ms=0)
TOPICS = TopicMap.load()


@pytest.fixture
def pipeline(diabetes_onnx: Path) -> CompiledPipeline:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    return load_pipeline("v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: diabetes_onnx)


def _stage(pipeline: CompiledPipeline, settings: WorkerSettings = SETTINGS) -> Stage:
    (stage,) = worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", settings)
    return stage


def _record(offset: int, rows: int = 1, value: bytes | None = None) -> ConsumerRecord:
    if value is None:
        x = np.full((rows, 10), 0.01 * offset, dtype=np.float32)
        value = codecs.encode(codecs.batch_from_arrays({"tensor": x}), codecs.ARROW_STREAM)
    headers = ((CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, f"r{offset}".encode()))
    return ConsumerRecord(
        "ws.p.in",
        2,
        offset,
        1_700_000_000_000 + offset,
        0,
        b"k",
        value,
        None,
        0,
        len(value),
        headers,
    )


def run_chunk(
    stage: Stage, chunk: list[Incoming], counters: StepCounters, attempts: int = 1
) -> list[list[Outgoing]]:
    """What the worker's loop does with a chunk, without its pauses between tries."""
    stage.run(chunk)
    for item in chunk:
        while item.work.retryable and item.work.attempts < attempts:
            stage.run_one(item)
    return stage.outgoing(chunk, counters)


def _run_all(stage: Stage, records: list[ConsumerRecord]) -> tuple[list[int], list[Outgoing]]:
    sizes, sent, done = [], [], 0
    counters = StepCounters()
    incoming = stage.receive(records)
    while done < len(incoming):
        chunk = stage.chunk(incoming, done)
        out = run_chunk(stage, chunk, counters)
        sizes.append(len(chunk))
        sent += [o for sent_for_one in out for o in sent_for_one]
        done += len(chunk)
    return sizes, sent


def test_small_messages_run_in_chunks_of_the_batch_size_and_each_gets_its_answer(
    pipeline: CompiledPipeline,
) -> None:
    records = [_record(i) for i in range(600)]
    sizes, sent = _run_all(_stage(pipeline), records)
    assert sizes == [256, 256, 88]
    assert [o.topic for o in sent] == ["ws.p.out"] * 600
    assert [Envelope.parse(o.headers).request_id for o in sent] == [f"r{i}" for i in range(600)]
    assert all(o.key == b"k" and o.partition == 2 for o in sent)  # the lane of its input
    first = codecs.decode(sent[7].value or b"", codecs.ARROW_STREAM)
    assert first.num_rows == 1
    assert first.column("time").cast("int64")[0].as_py() == 1_700_000_000_007  # its record's time


def test_a_message_over_the_batch_size_is_a_chunk_of_its_own(pipeline: CompiledPipeline) -> None:
    records = [_record(0), _record(1, rows=300), _record(2), _record(3)]
    sizes, sent = _run_all(_stage(pipeline), records)
    assert sizes == [2, 2]  # the large one closes the first chunk
    assert [codecs.decode(o.value or b"", codecs.ARROW_STREAM).num_rows for o in sent] == [
        1,
        300,
        1,
        1,
    ]


def test_a_fetch_of_arrow_and_json_requests_answers_each_with_its_own_rows(
    pipeline: CompiledPipeline,
) -> None:
    json_value = json.dumps([{"tensor": [0.5] * 10}] * 3).encode()
    json_record = dataclasses.replace(
        _record(2, value=json_value),
        headers=((CONTENT_TYPE, b"application/json"), (REQUEST_ID, b"r2")),
    )
    records = [_record(0, rows=2), _record(1), json_record, _record(3, rows=4)]
    _, sent = _run_all(_stage(pipeline), records)
    envs = {Envelope.parse(o.headers).request_id: Envelope.parse(o.headers) for o in sent}
    # Each answered in its request's own format, though they ran as one micro-batch.
    assert {rid: env.content_type for rid, env in envs.items()} == {
        "r0": codecs.ARROW_STREAM,
        "r1": codecs.ARROW_STREAM,
        "r2": codecs.PANDAS_RECORDS,
        "r3": codecs.ARROW_STREAM,
    }
    assert (
        json.loads(next(o.value or b"" for o in sent if envs["r2"].headers() == o.headers))[2][
            "metadata.row"
        ]
        == 2
    )
    answers = {
        Envelope.parse(o.headers).request_id: decode_answer(
            o.value or b"", Envelope.parse(o.headers).content_type
        )
        for o in sent
    }
    assert {rid: a.column("metadata.row").to_pylist() for rid, a in answers.items()} == {
        "r0": [0, 1],
        "r1": [0],
        "r2": [0, 1, 2],
        "r3": [0, 1, 2, 3],
    }
    assert answers["r2"].column("in.tensor").to_pylist() == [[0.5] * 10] * 3
    assert answers["r3"].column("in.tensor").to_pylist()[0] == pytest.approx([0.03] * 10)


def test_an_unreadable_record_is_answered_with_an_error_and_dead_lettered(
    pipeline: CompiledPipeline,
) -> None:
    records = [_record(0), _record(1, value=b"not arrow"), _record(2)]
    counters = StepCounters()
    stage = _stage(pipeline)
    chunk = stage.chunk(stage.receive(records), 0)
    sent_each = run_chunk(stage, chunk, counters)
    sent = [o for sent_for_one in sent_each for o in sent_for_one]
    assert [len(s) for s in sent_each] == [1, 2, 1]  # the failed one: error reply, dead letter
    assert len(chunk) == 3 and (counters.processed, counters.failed) == (2, 1)
    assert [o.topic for o in sent] == ["ws.p.out", "ws.p.out", "ws.p.dlq", "ws.p.out"]
    reply, dead = sent[1], sent[2]
    error = json.loads(dict(reply.headers)[ERROR])
    assert error["type"] == "CodecError" and error["attempts"] == "1"
    assert error["step"] == "decoding the input"  # no step ran: the codec refused it
    assert dead.value == b"not arrow"
    assert json.loads(dict(dead.headers)[SOURCE]) == ["ws.p.in", 2, 1]


def test_a_result_over_the_record_limit_is_answered_with_an_error(
    pipeline: CompiledPipeline,
) -> None:
    record = _record(0, rows=200)
    limit = len(record.value or b"") + 2000  # the input fits; its result, which carries it, not
    stage = _stage(pipeline, WorkerSettings(max_message_bytes=limit))
    counters = StepCounters()
    [sent] = run_chunk(stage, stage.chunk(stage.receive([record]), 0), counters)
    assert counters.failed == 1
    error = json.loads(dict(sent[0].headers)[ERROR])
    assert error["type"] == "RecordTooLarge" and "WEIR_MAX_MESSAGE_BYTES" in error["message"]
    carried = codecs.decode(sent[0].value or b"", codecs.ARROW_STREAM)
    assert carried.num_rows == 200 and "in.tensor" in carried.schema.names  # for the logs
    assert sent[1].topic == "ws.p.dlq" and sent[1].value == record.value


def test_if_decoding_together_breaks_each_record_is_decoded_alone(
    pipeline: CompiledPipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(payloads: object) -> None:
        raise RuntimeError("a bug in bulk decoding")

    monkeypatch.setattr(codecs, "decode_many", broken)
    records = [_record(0, rows=2), _record(1, value=b"not arrow"), _record(2)]
    incoming = _stage(pipeline).receive(records)
    assert [i.work.rows for i in incoming] == [2, 0, 1]
    assert isinstance(incoming[1].work.error, CodecError)
    assert incoming[0].work.batch is not None
    assert incoming[0].work.batch.column("_meta.row").to_pylist() == [0, 1]


def test_an_input_record_over_the_limit_is_answered_and_dead_lettered_without_its_value(
    pipeline: CompiledPipeline,
) -> None:
    stage = _stage(pipeline, WorkerSettings(max_message_bytes=4096))
    counters = StepCounters()
    big, small = _record(0, rows=200), _record(1)
    [refused, answered] = run_chunk(stage, stage.chunk(stage.receive([big, small]), 0), counters)
    assert (counters.processed, counters.failed) == (1, 1)
    reply, dead = refused
    error = json.loads(dict(reply.headers)[ERROR])
    assert error["type"] == "InputTooLarge" and "WEIR_MAX_MESSAGE_BYTES" in error["message"]
    assert dead.topic == "ws.p.dlq" and dead.value == b""
    assert int(dict(dead.headers)[VALUE_DROPPED]) == len(big.value or b"")
    assert answered[0].topic == "ws.p.out"


def _json_record(offset: int, rows: list[dict[str, object]]) -> ConsumerRecord:
    return dataclasses.replace(
        _record(offset, value=json.dumps(rows).encode()),
        headers=(
            (CONTENT_TYPE, codecs.PANDAS_RECORDS.encode()),
            (REQUEST_ID, f"r{offset}".encode()),
        ),
    )


@pytest.mark.parametrize(
    ("result_format", "arrow_in", "json_in"),
    [
        ("request", codecs.ARROW_STREAM, codecs.PANDAS_RECORDS),
        ("arrow", codecs.ARROW_STREAM, codecs.ARROW_STREAM),
        ("json", codecs.PANDAS_RECORDS, codecs.PANDAS_RECORDS),
    ],
)
def test_the_deployments_result_format_decides_what_answers_are_written_in(
    pipeline: CompiledPipeline, result_format: ResultFormat, arrow_in: str, json_in: str
) -> None:
    stage = dataclasses.replace(_stage(pipeline), result_format=result_format)
    _, sent = _run_all(stage, [_record(0), _json_record(1, [{"tensor": [0.5] * 10}])])
    envs = [Envelope.parse(o.headers) for o in sent]
    assert [env.content_type for env in envs] == [arrow_in, json_in]
    for outgoing, env in zip(sent, envs):
        answer = decode_answer(outgoing.value or b"", env.content_type)
        assert answer.column("metadata.row").to_pylist() == [0]
        assert answer.column("out.variable").type.value_type == (
            pa.float32() if env.content_type == codecs.ARROW_STREAM else pa.float64()
        )


def test_a_json_answer_writes_binary_as_base64_and_names_those_columns(
    pipeline: CompiledPipeline,
) -> None:
    batch = pa.record_batch(
        {
            "tensor": pa.array([[0.5] * 10], pa.list_(pa.float32(), 10)),
            "raw": pa.array([b"\x00\xff"]),
        }
    )
    record = _record(0, value=codecs.encode(batch, codecs.ARROW_STREAM))
    stage = dataclasses.replace(_stage(pipeline), result_format="json")
    _, [sent] = _run_all(stage, [record])
    env = Envelope.parse(sent.headers)
    assert env.base64_columns == ("in.raw",)
    assert json.loads(sent.value or b"")[0]["in.raw"] == "AP8="
    assert decode_answer(sent.value or b"", env.content_type, env.base64_columns).column(
        "in.raw"
    ).to_pylist() == [b"\x00\xff"]


def test_an_answer_json_cannot_hold_is_an_error_reply_and_a_dead_letter(
    pipeline: CompiledPipeline,
) -> None:
    ids = pa.array([b"0123456789abcdef"], pa.binary(16)).cast(pa.uuid())
    batch = pa.record_batch(
        {"tensor": pa.array([[0.5] * 10], pa.list_(pa.float32(), 10)), "id": ids}
    )
    record = _record(0, value=codecs.encode(batch, codecs.ARROW_STREAM))
    stage = dataclasses.replace(_stage(pipeline), result_format="json")
    counters = StepCounters()
    [sent] = run_chunk(stage, stage.chunk(stage.receive([record]), 0), counters)
    assert counters.failed == 1 and [o.topic for o in sent] == ["ws.p.out", "ws.p.dlq"]
    error = json.loads(dict(sent[0].headers)[ERROR])
    assert error["type"] == "CodecError"
    assert "column 'in.id' (extension<arrow.uuid>)" in error["message"]
    assert "result_format('arrow')" in error["message"]
    assert sent[1].value == record.value  # the dead letter: the record as it came


def test_a_failed_json_request_gets_its_error_reply_in_json(pipeline: CompiledPipeline) -> None:
    record = _json_record(0, [{"tensor": [0.5] * 3}])  # the model takes 10 values a row
    counters = StepCounters()
    stage = _stage(pipeline)
    [sent] = run_chunk(stage, stage.chunk(stage.receive([record]), 0), counters)
    reply, dead = sent
    env = Envelope.parse(reply.headers)
    assert env.error is not None and env.content_type == codecs.PANDAS_RECORDS
    assert json.loads(reply.value or b"") == [{"in.tensor": [0.5] * 3, "_meta.row": 0}]
    assert dead.topic == "ws.p.dlq" and dead.value == record.value
