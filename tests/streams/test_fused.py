"""Fused chains without Kafka (streams/plan.py): a version's steps run in one stage, and
the chain is cut only around sidekick steps."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from aiokafka.structs import ConsumerRecord

from engine import codecs
from engine.definition import (
    ModelStep,
    PipelineSpec,
    RandomSplitStep,
    ShadowStep,
    SplitArm,
)
from engine.pipeline import CompiledPipeline, load_pipeline
from streams.messages import CONTENT_TYPE, ERROR, REQUEST_ID, Envelope, Outgoing
from streams.plan import Layout, SidekickError, sidekick_steps, worker_stages
from streams.settings import WorkerSettings
from streams.stage import Stage, StepCounters
from streams.topics import TopicMap
from tests.streams._loops import three_steps
from tests.streams.test_stage import run_chunk

SETTINGS = WorkerSettings(max_batch_rows=256, retry_backoff_ms=0)
TOPICS = TopicMap.load()
OUTPUT = TOPICS.output("ws", "p").name


def _record(i: int, x: np.ndarray, topic: str = "ws.p.in") -> ConsumerRecord:
    value = codecs.encode(codecs.batch_from_arrays({"tensor": x}), codecs.ARROW_STREAM)
    headers = ((CONTENT_TYPE, codecs.ARROW_STREAM.encode()), (REQUEST_ID, f"r{i}".encode()))
    return ConsumerRecord(
        topic, i % 4, i, 1_700_000_000_000 + i, 0, None, value, None, 0, len(value), headers
    )


def _inputs(count: int = 6) -> list[ConsumerRecord]:
    rng = np.random.default_rng(1)
    return [_record(i, rng.random((1 + i % 3, 10), dtype=np.float32)) for i in range(count)]


def _through(
    stages: list[Stage], records: list[ConsumerRecord], attempts: int = 1
) -> list[Outgoing]:
    """Records through `stages` in order, each reading what earlier ones sent to its topic;
    returns everything sent that no stage reads."""
    queued: dict[str, list[ConsumerRecord]] = {stages[0].source: records}
    left: list[Outgoing] = []
    for stage in stages:
        incoming = stage.receive(queued.pop(stage.source, []))
        sent = run_chunk(stage, incoming, StepCounters(), attempts)
        for o in (o for for_one in sent for o in for_one):
            if any(s.source == o.topic for s in stages):
                queued.setdefault(o.topic, []).append(
                    dataclasses.replace(
                        records[0], topic=o.topic, value=o.value, headers=tuple(o.headers)
                    )
                )
            else:
                left.append(o)
    return left


def _answer(o: Outgoing) -> pa.RecordBatch:
    """A result record's rows, but for the time it took."""
    return codecs.decode(o.value or b"", codecs.ARROW_STREAM).drop_columns(["metadata.elapsed_ns"])


@pytest.fixture
def chain(tmp_path: Path, diabetes_onnx: Path) -> tuple[CompiledPipeline, PipelineSpec]:
    return three_steps(tmp_path, diabetes_onnx)


def test_a_version_runs_in_one_stage_that_decodes_only_its_input(
    chain: tuple[CompiledPipeline, PipelineSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, _ = chain
    stages = worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS)
    assert [(s.source, s.name) for s in stages] == [("ws.p.in", "steps-0-2")]
    decodes: list[int] = []
    decode_many = codecs.decode_many
    monkeypatch.setattr(
        codecs, "decode_many", lambda values: decodes.append(len(values)) or decode_many(values)
    )
    records = _inputs()
    answers = _through(stages, records)
    assert decodes == [6]  # nothing is decoded again between the steps
    assert [o.topic for o in answers] == [OUTPUT] * 6
    assert [Envelope.parse(o.headers).request_id for o in answers] == [f"r{i}" for i in range(6)]
    for record, o in zip(records, answers):
        x = codecs.decode(record.value or b"", codecs.ARROW_STREAM)
        expected = pipeline.run(x).column("out.variable")
        assert _answer(o).column("out.variable").equals(expected)


def test_a_sidekick_step_cuts_the_chain_and_the_answers_stay_the_same(
    chain: tuple[CompiledPipeline, PipelineSpec],
) -> None:
    pipeline, spec = chain
    layout = Layout("ws", "p", "d1", frozenset({1}))
    main = worker_stages(pipeline, layout, TOPICS, "main", SETTINGS)
    sidekick = worker_stages(pipeline, layout, TOPICS, "sidekick", SETTINGS, sidekick=1)
    assert [(s.source, s.sink.next) for s in main] == [  # type: ignore[attr-defined]
        ("ws.p.in", "ws.p.d1.s1"),
        ("ws.p.d1.s2", OUTPUT),
    ]
    assert [(s.source, s.sink.next) for s in sidekick] == [  # type: ignore[attr-defined]
        ("ws.p.d1.s1", "ws.p.d1.s2")
    ]
    # what each hands on at a cut (its worker commits that as soon as it is idle)
    assert [s.hands_on_to for s in [*main, *sidekick]] == ["ws.p.d1.s1", None, "ws.p.d1.s2"]
    assert {t.name for t in TOPICS.internal_topics("ws", "p", "d1", spec, {1})} == {
        "ws.p.d1.s1",
        "ws.p.d1.s2",
    }
    records = _inputs()
    fused = _through(
        worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS), records
    )
    cut = _through([main[0], *sidekick, main[1]], records)
    assert [_answer(o) for o in cut] == [_answer(o) for o in fused]
    assert [o.headers for o in cut] == [o.headers for o in fused]


@pytest.mark.parametrize("sidekicks", [{0}, {0, 2}, {0, 1, 2}])
def test_a_first_step_sidekick_reads_a_boundary_and_only_main_workers_read_the_input(
    chain: tuple[CompiledPipeline, PipelineSpec], sidekicks: set[int]
) -> None:
    """The main group owns the input's offsets, shared by every version: a sidekick group
    reading the input too would answer from its own offsets (every record again, in chaos
    runs), so the main workers forward the input to the first step's sidekick."""
    pipeline, spec = chain
    layout = Layout("ws", "p", "d1", frozenset(sidekicks))
    main = worker_stages(pipeline, layout, TOPICS, "main", SETTINGS)
    sidekick = {
        k: worker_stages(pipeline, layout, TOPICS, "sidekick", SETTINGS, sidekick=k)
        for k in sorted(sidekicks)
    }
    assert main[0].source == "ws.p.in" and main[0].sink.next == "ws.p.d1.s0"  # type: ignore[attr-defined]
    assert sidekick[0][0].source == "ws.p.d1.s0"
    assert all(s.source != "ws.p.in" for stages in sidekick.values() for s in stages)
    read = {s.source for s in main} | {s.source for st in sidekick.values() for s in st}
    assert read - {"ws.p.in"} <= {
        t.name for t in TOPICS.internal_topics("ws", "p", "d1", spec, sidekicks)
    }
    records = _inputs()
    fused = _through(
        worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS), records
    )
    order = sorted(
        [*main, *(s for st in sidekick.values() for s in st)],
        key=lambda s: (s.name != "input", s.source),
    )
    cut = _through(order, records)
    assert [_answer(o) for o in cut] == [_answer(o) for o in fused]


def test_a_json_answer_crosses_a_sidekick_in_arrow_and_is_written_json_at_the_end(
    chain: tuple[CompiledPipeline, PipelineSpec],
) -> None:
    pipeline, _ = chain
    layout = Layout("ws", "p", "d1", frozenset({1}))
    main = worker_stages(pipeline, layout, TOPICS, "main", SETTINGS, result_format="json")
    sidekick = worker_stages(pipeline, layout, TOPICS, "sidekick", SETTINGS, sidekick=1)
    records = _inputs(3)
    boundary = _through([main[0]], records)
    assert {o.topic for o in boundary} == {"ws.p.d1.s1"}
    for o in boundary:  # between stages: Arrow, with the answer's type carried along
        env = Envelope.parse(o.headers)
        assert (env.content_type, env.reply_type) == (codecs.ARROW_STREAM, codecs.PANDAS_RECORDS)
        codecs.decode(o.value or b"", codecs.ARROW_STREAM)
    cut = _through([main[0], *sidekick, main[1]], records)
    fused = _through(
        worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS), records
    )
    for json_answer, arrow_answer in zip(cut, fused):
        assert Envelope.parse(json_answer.headers).content_type == codecs.PANDAS_RECORDS
        rows = json.loads(json_answer.value or b"")
        expected = _answer(arrow_answer).column("out.variable").to_pylist()
        assert [row["out.variable"] for row in rows] == expected  # float32 values, exactly


def test_a_failing_middle_step_is_named_in_the_error_reply(
    chain: tuple[CompiledPipeline, PipelineSpec],
) -> None:
    pipeline, _ = chain
    stages = worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS)
    poisoned = _record(0, -np.ones((2, 10), np.float32))  # the scale step refuses negatives
    reply, dead = _through(stages, [poisoned], attempts=3)
    error = json.loads(dict(reply.headers)[ERROR])
    assert (error["step"], error["model"], error["attempts"]) == ("scale", "scale@1", "3")
    assert "poison row" in error["message"]
    assert dead.topic == TOPICS.dead_letter("ws", "p").name and dead.value == poisoned.value


def _last_step_as(
    step: Any, spec: PipelineSpec, tmp_path: Path, diabetes_onnx: Path
) -> CompiledPipeline:
    """The three steps with the last one (the diabetes model) replaced by `step`, loaded."""
    changed = PipelineSpec(steps=[*spec.steps[:2], step])
    files = dict(
        zip(
            (r.sha for r in changed.models()),
            [tmp_path / "pass.py", tmp_path / "scale.py", diabetes_onnx],
        )
    )
    return load_pipeline("v1", changed, lambda ref: files[ref.sha], seed=0)


def test_a_split_runs_whole_in_its_span_and_answers_once_in_input_order(
    chain: tuple[CompiledPipeline, PipelineSpec], tmp_path: Path, diabetes_onnx: Path
) -> None:
    _, spec = chain
    diabetes = spec.steps[2].model  # type: ignore[union-attr]
    other = diabetes.model_copy(update={"name": "other"})
    split = RandomSplitStep(
        arms=[SplitArm(weight=1, models=[diabetes]), SplitArm(weight=1, models=[other])]
    )
    pipeline = _last_step_as(split, spec, tmp_path, diabetes_onnx)
    stages = worker_stages(pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS)
    answers = _through(stages, [_record(0, np.ones((40, 10), np.float32))])
    [answer] = answers  # one record, whatever arms its rows took
    rows = _answer(answer)
    assert rows.column("metadata.row").to_pylist() == list(range(40))
    arms = [json.loads(arm)[0]["name"] for arm in rows.column("out._model_split").to_pylist()]
    assert set(arms) == {"diabetes", "other"}  # 40 rows, two arms of equal weight: both drawn


def test_a_shadow_step_fans_its_input_out_and_only_the_champion_answers(
    chain: tuple[CompiledPipeline, PipelineSpec], tmp_path: Path, diabetes_onnx: Path
) -> None:
    _, spec = chain
    diabetes = spec.steps[2].model  # type: ignore[union-attr]
    challenger = diabetes.model_copy(update={"name": "challenger"})
    shadow = ShadowStep(champion=diabetes, challengers=[challenger])
    pipeline = _last_step_as(shadow, spec, tmp_path, diabetes_onnx)
    stages = worker_stages(
        pipeline, Layout("ws", "p", "d1"), TOPICS, "main", SETTINGS, result_format="json"
    )  # answers only: challengers' input stays Arrow
    records = _inputs(3)
    sent = _through(stages, records)
    challenger_topic = TOPICS.challenger("ws", "p", "d1", 2, 0).name
    assert [o.topic for o in sent] == [OUTPUT, challenger_topic] * 3
    for record, fanned in zip(records, sent[1::2]):
        x = codecs.decode(record.value or b"", codecs.ARROW_STREAM).column("tensor")
        step_input = codecs.decode(fanned.value or b"", codecs.ARROW_STREAM)
        scaled = codecs.column_to_ndarray(x) * 0.5  # what step 1 made of it
        np.testing.assert_allclose(
            codecs.column_to_ndarray(step_input.column("float_input")), scaled, rtol=1e-6
        )
        assert (
            Envelope.parse(fanned.headers).request_id == Envelope.parse(record.headers).request_id
        )
    (challenger_stage,) = worker_stages(
        pipeline, Layout("ws", "p", "d1"), TOPICS, "shadow", SETTINGS
    )
    assert challenger_stage.source == challenger_topic
    assert [s.hands_on_to for s in [*stages, challenger_stage]] == [None, None]
    assert [s.fans_out_to for s in [*stages, challenger_stage]] == [{challenger_topic}, set()]


def test_sidekick_settings_must_name_one_model_of_a_step(
    chain: tuple[CompiledPipeline, PipelineSpec],
) -> None:
    _, spec = chain
    assert sidekick_steps(spec, {"scale"}) == {1: "scale"}
    with pytest.raises(SidekickError, match="does not run"):
        sidekick_steps(spec, {"nope"})
    diabetes = spec.steps[2].model  # type: ignore[union-attr]
    both = PipelineSpec(
        steps=[
            RandomSplitStep(
                arms=[
                    SplitArm(weight=1, models=[diabetes]),
                    SplitArm(weight=1, models=[diabetes.model_copy(update={"name": "other"})]),
                ]
            )
        ]
    )
    with pytest.raises(SidekickError, match="one model of a step"):
        sidekick_steps(both, {"diabetes", "other"})
    assert isinstance(spec.steps[0], ModelStep)
