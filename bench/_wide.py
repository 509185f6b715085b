"""What the wide-row benchmark runs, and its account of per-byte costs in process.

The model is an MLP over 512 float32 features (512 -> 384 -> 384 -> 1, random weights,
written with onnx.helper); the 3-step chain puts a Python step before it that widens 10
features to 512 and one after it that passes its output on. `parts` times, per 256-row
message of 512 features (0.5 MB), what a worker and the log agent do to it apart from the
Kafka client: decode, compute, finish, encode the answer (with and without the carried
`in.*` inputs), and the log agent's ingest of its rows.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from engine import codecs
from engine.columns import IN_PREFIX
from engine.definition import ModelRef, ModelStep, PipelineSpec
from engine.pipeline import CompiledPipeline, load_pipeline
from engine.runtimes.base import RuntimeOptions, sha256_file
from streams.log_policy import LogPolicy
from streams.log_rows import result_rows
from streams.logstore import LogStore

FEATURES = 512
NARROW = 10
HIDDEN = (384, 384)
ROWS = 256
WIDEN = f"""
import numpy as np

_W = np.random.default_rng(0).standard_normal(({NARROW}, {FEATURES})).astype(np.float32)


def process_data(input_data):
    return {{"features": np.tanh(input_data["tensor"] @ _W)}}
"""
"""Widens the 10 features a request carries to the MLP's 512 (a random projection)."""
PASS_ON = """
def process_data(input_data):
    return input_data
"""
"""Passes the MLP's output on as it is."""


def mlp(path: Path, seed: int = 0) -> Path:
    """The MLP as ONNX: `float_input` [N, 512] -> Gemm/Relu x2 (384 wide) -> `variable` [N, 1]."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, weights, last, width = [], [], "float_input", FEATURES
    for i, out in enumerate((*HIDDEN, 1)):
        w = rng.standard_normal((width, out)) * np.sqrt(2 / width)
        weights += [
            numpy_helper.from_array(w.astype(np.float32), f"w{i}"),
            numpy_helper.from_array(np.zeros(out, np.float32), f"b{i}"),
        ]
        name = "variable" if out == 1 else f"h{i}"
        nodes.append(helper.make_node("Gemm", [last, f"w{i}", f"b{i}"], [name]))
        if out != 1:
            nodes.append(helper.make_node("Relu", [name], [f"r{i}"]))
            name = f"r{i}"
        last, width = name, out
    graph = helper.make_graph(
        nodes,
        "wide_mlp",
        [helper.make_tensor_value_info("float_input", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, ["N", 1])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def write_models(root: Path) -> dict[str, Path]:
    """The MLP and the two Python steps of the chain."""
    root.mkdir(parents=True, exist_ok=True)
    paths = {
        "mlp": mlp(root / "mlp.onnx"),
        "widen": root / "widen.py",
        "pass_on": root / "pass_on.py",
    }
    paths["widen"].write_text(WIDEN)
    paths["pass_on"].write_text(PASS_ON)
    return paths


def batches(width: int, count: int = 8, seed: int = 0) -> list[np.ndarray]:
    """`count` distinct float32 batches of ROWS rows and `width` features."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((ROWS, width)).astype(np.float32) for _ in range(count)]


def request(batch: np.ndarray) -> bytes:
    """A request: one `tensor` column, as an Arrow stream."""
    return codecs.encode(codecs.batch_from_arrays({"tensor": batch}), codecs.ARROW_STREAM)


def load_mlp(path: Path) -> CompiledPipeline:
    """The 1-step wide pipeline in process, one onnxruntime thread (as a worker with cpus=1)."""
    ref = ModelRef(name="mlp", version="bench", sha=sha256_file(path), runtime="onnx")
    return load_pipeline(
        "bench",
        PipelineSpec(steps=[ModelStep(model=ref)]),
        lambda _: path,
        RuntimeOptions(threads=1),
    )


def _ms_per_message(call: Callable[[], Any], messages: int, seconds: float) -> float:
    """Mean ms per message of `call()` (which handles `messages` messages), over `seconds`."""
    call()  # warm up
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or n < 3:
        call()
        n += 1
    return round((time.perf_counter() - started) / (n * messages) * 1e3, 4)


def without_inputs(batch: pa.RecordBatch) -> pa.RecordBatch:
    return batch.drop_columns([n for n in batch.schema.names if n.startswith(IN_PREFIX)])


def parts(path: Path, payloads: list[bytes], seconds: float, fetch: int = 8) -> dict[str, Any]:
    """ms per message of each part of the 1-step wide path in process, `fetch` messages at a
    time (as a worker decodes and encodes a fetch's messages together), and the bytes each
    message and answer carries."""
    pipeline = load_mlp(path)
    values = [payloads[i % len(payloads)] for i in range(fetch)]
    rows = [ROWS] * fetch
    [run] = codecs.decode_many(values)
    assert not isinstance(run, Exception), run
    message = CompiledPipeline.start(run.batch, run.rows)
    computed = pipeline.run_step(0, message)
    started = np.full(ROWS * fetch, time.time_ns(), np.int64)
    result = pipeline.finish(computed, started_ns=started)
    answers = codecs.encode_many(result, rows)
    slim = without_inputs(result)
    slim_answers = codecs.encode_many(slim, rows)
    out: dict[str, Any] = {
        "fetch_messages": fetch,
        "request_bytes": len(values[0]),
        "answer_bytes": len(answers[0]),
        "answer_bytes_without_inputs": len(slim_answers[0]),
        "ms_per_message": {
            "decode": _ms_per_message(lambda: codecs.decode_many(values), fetch, seconds),
            "decode_one_by_one": _ms_per_message(
                lambda: [codecs.decode(v, codecs.ARROW_STREAM) for v in values], fetch, seconds
            ),
            "start": _ms_per_message(
                lambda: CompiledPipeline.start(run.batch, run.rows), fetch, seconds
            ),
            "mlp_step": _ms_per_message(lambda: pipeline.run_step(0, message), fetch, seconds),
            "finish": _ms_per_message(
                lambda: pipeline.finish(computed, started_ns=started), fetch, seconds
            ),
            "encode_answers": _ms_per_message(
                lambda: codecs.encode_many(result, rows), fetch, seconds
            ),
            "encode_answers_without_inputs": _ms_per_message(
                lambda: codecs.encode_many(slim, rows), fetch, seconds
            ),
        },
    }
    pipeline.unload()
    out["log_agent"] = log_ingest(answers, slim_answers, seconds)
    return out


def log_ingest(answers: list[bytes], slim_answers: list[bytes], seconds: float) -> dict[str, float]:
    """The log agent's work on a fetch of answers, ms per message: log rows in bulk, the
    default log policy and a Parquet append (`_rows_only`: the log rows alone); with and
    without the carried inputs; and the Parquet bytes stored per row."""
    policy = LogPolicy()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="weir-bench-wide-logs-") as root:
        store = LogStore(Path(root))
        for label, values in (("log_ingest", answers), ("log_ingest_without_inputs", slim_answers)):
            results = [(value, f"r{i}", None) for i, value in enumerate(values)]
            stored = [0]

            def ingest(
                label: str = label, results: list[Any] = results, stored: list[int] = stored
            ) -> None:
                for batch in result_rows(results):
                    kept = policy.apply(batch)
                    store.append("default", label, kept)
                    stored[0] += kept.num_rows

            out[label] = _ms_per_message(ingest, len(values), seconds)
            out[f"{label}_rows_only"] = _ms_per_message(
                lambda r=results: result_rows(r), len(values), seconds
            )
            files = Path(root, "default", label).rglob("*.parquet")
            out[f"{label}_parquet_bytes_per_row"] = round(
                sum(f.stat().st_size for f in files) / max(stored[0], 1), 1
            )
    return out
