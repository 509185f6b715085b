"""A stage without Kafka (streams/agents/step.py `Stage`, streams/agents/sinks.py): records in,
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
from engine.errors import CodecError
from engine.definition import ModelRef, ModelStep, PipelineSpec, RandomSplitStep, SplitArm
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file
from streams.agents.step import Results, Stage, StepCounters
from streams.messages import CONTENT_TYPE, ERROR, REQUEST_ID, SOURCE, Envelope, Outgoing
from streams.settings import WorkerSettings
from streams.stages import version_stages
from streams.topics import TopicMap
from tests.streams._loops import three_steps

SETTINGS = WorkerSettings(max_batch_rows=256, retry_backoff_ms=0)
TOPICS = TopicMap.load()


@pytest.fixture
def pipeline(diabetes_onnx: Path) -> CompiledPipeline:
    ref = ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx")
    return load_pipeline("v1", PipelineSpec(steps=[ModelStep(model=ref)]), lambda _: diabetes_onnx)


def _stage(pipeline: CompiledPipeline, settings: WorkerSettings = SETTINGS) -> Stage:
    (stage,) = version_stages(pipeline, "ws", "p", TOPICS, "main", settings)
    return stage


def _record(offset: int, rows: int = 1, value: bytes | None = None) -> ConsumerRecord:
    if value is None:
        x = np.full((rows, 10), 0.01 * offset, dtype=np.float32)
        value = codecs.encode(codecs.batch_from_arrays({"tensor": x}), codecs.ARROW_STREAM)
    headers = ((CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, f"r{offset}".encode()))
    return ConsumerRecord("ws.p.in", 2, offset, 1_700_000_000_000 + offset, 0, b"k", value, None,
                          0, len(value), headers)


def _run_all(stage: Stage, records: list[ConsumerRecord]) -> tuple[list[int], list[Outgoing]]:
    sizes, sent, done = [], [], 0
    counters = StepCounters()
    incoming = stage.receive(records)
    while done < len(incoming):
        chunk, out = stage.process(incoming, done, counters, SETTINGS)
        sizes.append(len(chunk))
        sent += [o for sent_for_one in out for o in sent_for_one]
        done += len(chunk)
    return sizes, sent


def test_small_messages_run_in_chunks_of_the_batch_size_and_each_gets_its_answer(
        pipeline: CompiledPipeline) -> None:
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
    assert [codecs.decode(o.value or b"", codecs.ARROW_STREAM).num_rows for o in sent] == [1, 300, 1, 1]


def test_a_fetch_of_arrow_and_json_requests_answers_each_with_its_own_rows(
        pipeline: CompiledPipeline) -> None:
    json_value = json.dumps([{"tensor": [0.5] * 10}] * 3).encode()
    json_record = dataclasses.replace(_record(2, value=json_value), headers=(
        (CONTENT_TYPE, b"application/json"), (REQUEST_ID, b"r2")))
    records = [_record(0, rows=2), _record(1), json_record, _record(3, rows=4)]
    _, sent = _run_all(_stage(pipeline), records)
    answers = {Envelope.parse(o.headers).request_id: codecs.decode(o.value or b"",
                                                                   codecs.ARROW_STREAM)
               for o in sent}
    assert {rid: a.column("metadata.row").to_pylist() for rid, a in answers.items()} == {
        "r0": [0, 1], "r1": [0], "r2": [0, 1, 2], "r3": [0, 1, 2, 3]}
    assert answers["r2"].column("in.tensor").to_pylist() == [[0.5] * 10] * 3
    assert answers["r3"].column("in.tensor").to_pylist()[0] == pytest.approx([0.03] * 10)


def test_an_unreadable_record_is_answered_with_an_error_and_dead_lettered(
        pipeline: CompiledPipeline) -> None:
    records = [_record(0), _record(1, value=b"not arrow"), _record(2)]
    counters = StepCounters()
    stage = _stage(pipeline)
    chunk, sent_each = stage.process(stage.receive(records), 0, counters, SETTINGS)
    sent = [o for sent_for_one in sent_each for o in sent_for_one]
    assert [len(s) for s in sent_each] == [1, 2, 1]  # the failed one: error reply, dead letter
    assert len(chunk) == 3 and (counters.processed, counters.failed) == (2, 1)
    assert [o.topic for o in sent] == ["ws.p.out", "ws.p.out", "ws.p.dlq", "ws.p.out"]
    reply, dead = sent[1], sent[2]
    error = json.loads(dict(reply.headers)[ERROR])
    assert error["type"] == "CodecError" and error["attempts"] == "1"
    assert dead.value == b"not arrow"
    assert json.loads(dict(dead.headers)[SOURCE]) == ["ws.p.in", 2, 1]


def test_a_result_over_the_record_limit_is_answered_with_an_error(
        pipeline: CompiledPipeline) -> None:
    stage = _stage(pipeline, WorkerSettings(max_message_bytes=4096))
    counters = StepCounters()
    _, [sent] = stage.process(stage.receive([_record(0, rows=200)]), 0, counters, SETTINGS)
    assert counters.failed == 1
    error = json.loads(dict(sent[0].headers)[ERROR])
    assert error["type"] == "RecordTooLarge" and "WEIR_MAX_MESSAGE_BYTES" in error["message"]
    assert sent[0].value == b""  # its input is too big to carry back as well
    assert sent[1].topic == "ws.p.dlq"


def test_if_decoding_together_breaks_each_record_is_decoded_alone(
        pipeline: CompiledPipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(payloads: object) -> None:
        raise RuntimeError("a bug in bulk decoding")

    monkeypatch.setattr(codecs, "decode_many", broken)
    records = [_record(0, rows=2), _record(1, value=b"not arrow"), _record(2)]
    incoming = _stage(pipeline).receive(records)
    assert [i.work.rows for i in incoming] == [2, 0, 1]
    assert isinstance(incoming[1].work.error, CodecError)
    assert incoming[0].work.batch is not None
    assert incoming[0].work.batch.column("_meta.row").to_pylist() == [0, 1]


@pytest.mark.parametrize("shape", ["three steps", "a step, then an A/B split"])
def test_a_handed_record_runs_on_the_batch_it_was_encoded_from_with_the_same_answer(
        shape: str, diabetes_onnx: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, spec = three_steps(tmp_path, diabetes_onnx)
    if shape != "three steps":  # pass, scale, then diabetes or diabetes again
        diabetes = spec.steps[2].model  # type: ignore[union-attr]
        spec = PipelineSpec(steps=[*spec.steps[:2], RandomSplitStep(arms=[
            SplitArm(weight=1, models=[diabetes]), SplitArm(weight=1, models=[diabetes])])])
    files = {ref.sha: path for ref, path in zip(
        spec.models(), [tmp_path / "pass.py", tmp_path / "scale.py", diabetes_onnx, diabetes_onnx])}
    inputs = [_record(i, rows=1 + i % 3) for i in range(6)]
    output = TOPICS.output("ws", "p").name

    def through(use_ready: bool) -> list[Outgoing]:
        """The inputs through every stage, in process; each stage's records as it sent them."""
        pipeline = load_pipeline("v1", spec, lambda ref: files[ref.sha], seed=0)  # same draws
        stages = version_stages(pipeline, "ws", "p", TOPICS, "main", SETTINGS)
        queued: dict[str, list[Outgoing]] = {stages[0].source: []}
        answers: list[Outgoing] = []
        for stage in stages:  # in order: each reads only what stages before it sent
            sent = queued.pop(stage.source, [])
            records = [dataclasses.replace(r, topic=o.topic, value=o.value, headers=o.headers)
                       for r, o in zip(inputs, sent)] if sent else inputs
            ready = [o.decoded() for o in sent if o.decoded] \
                if use_ready and sent and all(o.decoded for o in sent) else None  # as the loop
            incoming, counters = stage.receive(records, ready), StepCounters()
            chunk, out = stage.process(incoming, 0, counters, SETTINGS)
            assert len(chunk) == len(records) and counters.failed == 0
            for o in (o for for_one in out for o in for_one):
                (answers if o.topic == output else queued.setdefault(o.topic, [])).append(o)
        return answers

    decodes: list[int] = []
    decode_many = codecs.decode_many
    monkeypatch.setattr(codecs, "decode_many", lambda values: decodes.append(len(values))
                        or decode_many(values))
    decoded_each_time = through(use_ready=False)
    assert len(decodes) == (3 if shape == "three steps" else 5)  # every stage decodes
    decodes.clear()
    from_batches = through(use_ready=True)
    assert decodes == [6]  # the input only: the later stages ran on the batches

    def answer(o: Outgoing) -> pa.RecordBatch:  # all but the time it took
        return codecs.decode(o.value, codecs.ARROW_STREAM).drop_columns(["metadata.elapsed_ns"])

    assert len(from_batches) == len(decoded_each_time) >= len(inputs)
    assert [answer(o) for o in from_batches] == [answer(o) for o in decoded_each_time]
    assert [o.headers for o in from_batches] == [o.headers for o in decoded_each_time]


def test_a_result_decoded_from_its_batch_equals_the_decoded_bytes() -> None:
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    batch = codecs.batch_from_arrays({"tensor": x}).append_column(
        "model", codecs.repeated("m:1", 6))  # a dictionary column, as results carry
    results = Results(batch, [1, 3, 2])
    for index in range(3):
        ready = results.decoded(index)
        assert ready.batch.equals(codecs.decode(results.encoded(index), codecs.ARROW_STREAM))
        assert ready.batch.schema.equals(
            codecs.decode(results.encoded(index), codecs.ARROW_STREAM).schema,
            check_metadata=True)
