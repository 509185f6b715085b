"""streams/compute.py and streams/batching.py without a broker: micro-batch planning,
merge/split, and StageCompute.

StageCompute runs a real two-step pipeline fused (a Python step, then the
diabetes ONNX model); the Python step writes each batch size it sees to a
file, so the tests can tell merged runs from one-by-one runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine import codecs
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.errors import CodecError, InputMismatch, StepFailed
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import sha256_file
from streams.batching import merge, plan_micro_batches, split
from streams.compute import StageCompute, Work, finisher, joined, span

X = np.random.default_rng(3).random((200, 10), dtype=np.float32)
POISON = -999.0

PRE = """
import numpy as np
def process_data(input_data):
    tensor = input_data["tensor"]
    with open({sizes!r}, "a") as f:
        f.write(f"{{len(tensor)}}\\n")
    if (tensor == {poison}).any():
        raise ValueError("poison row")
    return {{"float_input": (tensor * 0.5).astype(np.float32)}}
"""


@pytest.fixture
def sizes(tmp_path: Path) -> Path:
    return tmp_path / "sizes.txt"


@pytest.fixture
def pipeline(tmp_path: Path, diabetes_onnx: Path, sizes: Path) -> CompiledPipeline:
    pre = tmp_path / "pre.py"
    pre.write_text(PRE.format(sizes=str(sizes), poison=POISON))
    refs = [
        ModelRef(name="pre", version="1", sha=sha256_file(pre), runtime="python"),
        ModelRef(name="diabetes", version="1", sha=sha256_file(diabetes_onnx), runtime="onnx"),
    ]
    paths = {refs[0].sha: pre, refs[1].sha: diabetes_onnx}
    spec = PipelineSpec(steps=[ModelStep(model=r) for r in refs])
    return load_pipeline("v1", spec, lambda ref: paths[ref.sha])


def seen(sizes: Path) -> list[int]:
    return [int(line) for line in sizes.read_text().split()] if sizes.exists() else []


def rows(x: np.ndarray) -> pa.RecordBatch:
    return codecs.batch_from_arrays({"tensor": x})


def both_steps(pipeline: CompiledPipeline) -> StageCompute:
    """Both steps fused, from the input to the result rows."""
    return StageCompute(
        span(pipeline, 0, 2), finish=finisher(pipeline), starts=True, max_batch_rows=256
    )


def through_both_steps(
    pipeline: CompiledPipeline, inputs: list[pa.RecordBatch], started: list[int] | None = None
) -> list[Work]:
    compute = both_steps(pipeline)
    started = started or [0] * len(inputs)
    works = [
        Work(compute.decode(codecs.encode(b, codecs.ARROW_STREAM), codecs.ARROW_STREAM), s)
        for b, s in zip(inputs, started)
    ]
    compute.run(works)
    return works


# -- planning ------------------------------------------------------------------
def test_single_rows_merge_up_to_the_row_limit() -> None:
    plan = plan_micro_batches([("s", 1)] * 10, max_rows=4)
    assert plan == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_large_and_empty_messages_run_alone_and_order_is_kept() -> None:
    plan = plan_micro_batches([("s", 1), ("s", 300), ("s", 2), ("s", 0), ("s", 1)], max_rows=256)
    assert plan == [[0, 2, 4], [1], [3]]
    assert sorted(i for group in plan for i in group) == list(range(5))


def test_only_messages_of_one_schema_merge() -> None:
    plan = plan_micro_batches([("a", 1), ("b", 1), ("a", 1), ("b", 1)], max_rows=8)
    assert plan == [[0, 2], [1, 3]]


def test_a_group_that_would_overflow_starts_a_new_one() -> None:
    assert plan_micro_batches([("s", 3), ("s", 2), ("s", 1)], max_rows=4) == [[0], [1, 2]]


def test_merge_then_split_gives_the_messages_back() -> None:
    batches = [rows(X[:1]), rows(X[1:4]), rows(X[4:5])]
    merged = merge(batches)
    assert merged.num_rows == 5
    for piece, batch in zip(split(merged, [1, 3, 1]), batches, strict=True):
        assert piece.equals(batch)


def test_split_refuses_row_counts_that_do_not_add_up() -> None:
    with pytest.raises(ValueError, match="cannot split 5 rows"):
        split(merge([rows(X[:5])]), [2, 2])


def test_neighbours_decoded_together_join_as_a_slice_others_as_a_copy() -> None:
    whole = rows(X[:6])
    works = [
        Work(piece, 0, source=(whole, at))
        for piece, at in zip(split(whole, [1, 3, 2]), [0, 1, 4], strict=True)
    ]
    together = joined(works[1:])
    assert together.equals(whole.slice(1, 5))
    values = together.column(0).values.buffers()[1]
    assert values.address == whole.column(0).values.buffers()[1].address  # not copied
    gap = joined([works[0], works[2]])  # not consecutive: copied, in order
    assert gap.equals(merge([whole.slice(0, 1), whole.slice(4, 2)]))
    assert gap.column(0).values.buffers()[1].address != values.address


# -- StageCompute --------------------------------------------------------------------
def test_200_single_row_messages_run_vectorised_and_keep_their_own_answers(
    pipeline: CompiledPipeline, sizes: Path
) -> None:
    works = through_both_steps(pipeline, [rows(X[i : i + 1]) for i in range(200)])
    assert seen(sizes) == [200]  # one call of the Python step for all 200 messages
    alone = pipeline.run(rows(X))
    expected = codecs.column_to_ndarray(alone.column("out.variable"))
    for i, work in enumerate(works):
        assert work.error is None and work.attempts == 1
        assert work.result is not None and work.result.num_rows == 1
        np.testing.assert_array_equal(
            codecs.column_to_ndarray(work.result.column("in.tensor")), X[i : i + 1]
        )
        np.testing.assert_allclose(
            codecs.column_to_ndarray(work.result.column("out.variable")),
            expected[i : i + 1],
            rtol=1e-6,
        )


def test_rows_per_message_elapsed_time_and_time_stay_per_message(
    pipeline: CompiledPipeline,
) -> None:
    t0 = 1_700_000_000_000_000_000  # ns
    started = [t0, t0 + 1_000, t0 + 5_000_000]
    works = through_both_steps(pipeline, [rows(X[:1]), rows(X[1:4]), rows(X[4:6])], started=started)
    results = [w.result for w in works if w.result is not None]
    assert [r.num_rows for r in results] == [1, 3, 2]
    elapsed = [r.column("metadata.elapsed_ns")[0].as_py() for r in results]
    assert elapsed[0] - elapsed[1] == 1_000 and elapsed[0] - elapsed[2] == 5_000_000
    # Rows are timed by their request, so a request processed again yields the same rows.
    times = [r.column("time").cast(pa.int64()).to_pylist() for r in results]
    assert times == [[t0 // 1_000_000], [t0 // 1_000_000] * 3, [t0 // 1_000_000 + 5] * 2]


def test_one_poisoned_message_does_not_fail_its_micro_batch(
    pipeline: CompiledPipeline, sizes: Path
) -> None:
    poisoned = X[:10].copy()
    poisoned[4, 0] = POISON
    works = through_both_steps(pipeline, [rows(poisoned[i : i + 1]) for i in range(10)])
    assert [w.error is None for w in works] == [i != 4 for i in range(10)]
    assert isinstance(works[4].error, StepFailed) and "poison row" in str(works[4].error)
    assert works[4].failed_step == 0 and works[4].retryable
    assert seen(sizes)[0] == 10 and seen(sizes)[1:] == [1] * 10  # merged, then one by one


def test_a_misshaped_message_fails_alone_and_is_not_retried(pipeline: CompiledPipeline) -> None:
    compute = StageCompute(span(pipeline, 1, 2), finish=finisher(pipeline), max_batch_rows=256)
    good = pipeline.run_step(0, pipeline.start(rows(X[:2])))
    bad = pipeline.start(pa.RecordBatch.from_pydict({"float_input": [[1.0, 2.0, 3.0]]}))
    works = [Work(good, 0), Work(bad, 0), Work(good, 0)]
    compute.run(works)
    assert [w.error is None for w in works] == [True, False, True]
    assert isinstance(works[1].error, InputMismatch) and not works[1].retryable
    assert works[1].failed_step == 1


def test_messages_of_different_schemas_run_in_separate_batches(
    pipeline: CompiledPipeline, sizes: Path
) -> None:
    as_double = codecs.batch_from_arrays({"tensor": X[:3].astype(np.float64)})
    inputs = [rows(X[:1]), rows(X[1:2]).slice(0, 1), as_double]
    works = through_both_steps(pipeline, inputs)
    assert all(w.error is None for w in works)
    assert sorted(seen(sizes)) == [2, 3]


def test_unreadable_records_are_codec_errors(pipeline: CompiledPipeline) -> None:
    compute = both_steps(pipeline)
    with pytest.raises(CodecError):
        compute.decode(b"\x00not arrow", codecs.ARROW_STREAM)
    with pytest.raises(CodecError):
        compute.decode(None, codecs.ARROW_STREAM)
    json_rows = compute.decode(b'[{"tensor": [1,2,3,4,5,6,7,8,9,10]}]', codecs.PANDAS_RECORDS)
    assert json_rows.num_rows == 1 and "in.tensor" in json_rows.schema.names
