"""Real workloads on the embedded stack: an image pipeline whose pre-processing step brings
its own packages (Pillow, installed into the step's environment by the worker), PNG bytes
in three encodings over HTTP and Kafka, a model upgrade that renames its outputs, a log
policy that keeps images out of the logs, and a requirement that cannot be installed."""

from __future__ import annotations

import asyncio
import base64
import importlib.util
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pyarrow as pa
import pytest
from onnx import TensorProto, helper, numpy_helper

from control.errors import WaitForDeployError
from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from control.sdk.pipeline import Pipeline
from engine import codecs
from engine.columns import META_DROPPED
from tests._png import png_bytes
from tests.engine._steps import step_zip
from tests.integration._streams import kafka_round_trip

pytestmark = pytest.mark.slow

SIDE = 8
PRE = f"""
import base64
import io
import numpy as np
from PIL import Image

def _bytes(value):
    return base64.b64decode(value) if isinstance(value, str) else bytes(value)

def process_data(input_data):
    images = [Image.open(io.BytesIO(_bytes(v))).convert("RGB").resize(({SIDE}, {SIDE}))
              for v in input_data["png"]]
    return {{"pixels": np.stack([np.asarray(im, np.float32).reshape(-1) / 255 for im in images])}}
"""
"""Decodes PNG bytes (binary, base64 text, or uint8 lists), resizes and normalises."""
POST = """
import numpy as np

def process_data(input_data):
    probs = input_data["probs"]
    return {"label": probs.argmax(axis=1).astype(np.int32), "confidence": probs.max(axis=1)}
"""
"""Written for an output called `probs`, whatever the model generation calls it."""
WEIGHTS = np.random.default_rng(11).normal(size=(SIDE * SIDE * 3, 4)).astype(np.float32)
COLOURS = [(250, 10, 10), (10, 240, 20), (5, 5, 250), (128, 128, 128)]
SIZES = [(10, 12), (31, 17), (64, 40), (9, 9)]


def _classifier(path: Path, output: str, weights: np.ndarray) -> Path:
    """pixels [N, 192] -> softmax(pixels @ weights) named `output` [N, 4]."""
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pixels", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], [output], axis=1),
        ],
        "classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", weights.shape[0]])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(weights, "w")],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _images() -> list[bytes]:
    return [
        png_bytes(np.full((h, w, 3), colour, np.uint8)) for colour, (h, w) in zip(COLOURS, SIZES)
    ]


def _labels(weights: np.ndarray) -> list[int]:
    pixels = np.array([np.tile(np.array(c, np.float32) / 255, SIDE * SIDE) for c in COLOURS])
    return (pixels @ weights).argmax(axis=1).tolist()


@pytest.fixture(scope="module")
def images_pipeline(client: Client, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    assert importlib.util.find_spec("PIL") is None, "weir's own environment must lack Pillow"
    root = tmp_path_factory.mktemp("workloads")
    pre = client.upload_model("img-pre", step_zip(root / "pre.zip", {"pre.py": PRE}, "Pillow\n"))
    (root / "post.py").write_text(POST)
    post = client.upload_model("img-post", root / "post.py")
    model = client.upload_model(
        "img-cls", _classifier(root / "v1.onnx", "softmax_11.tmp_0", WEIGHTS)
    )
    pipeline = (
        client.build_pipeline("images")
        .add_model_step(pre)
        .add_model_step(model, outputs={"softmax_11.tmp_0": "probs"})
        .add_model_step(post)
    )
    config = DeploymentConfigBuilder().log_policy(max_row_bytes=16_384, exclude=["note"]).build()
    return pipeline.deploy(config, timeout_s=300, quiet=True)


def test_png_bytes_binary_base64_and_uint8_lists_over_http(
    stack: dict[str, Any], images_pipeline: Pipeline
) -> None:
    images = _images()
    assert len({len(png) for png in images}) > 1  # ragged
    as_binary = images_pipeline.infer(pa.table({"png": pa.array(images, pa.binary())}))
    assert as_binary.column("out.label").to_pylist() == _labels(WEIGHTS)
    as_lists = images_pipeline.infer(
        pa.table({"png": pa.array([list(png) for png in images], pa.list_(pa.uint8()))})
    )
    assert as_lists.column("out.label").to_pylist() == _labels(WEIGHTS)
    records = [{"png": base64.b64encode(png).decode()} for png in images]
    response = httpx.post(
        images_pipeline.url(),
        content=json.dumps(records),
        timeout=60,
        headers={"Authorization": f"Bearer {stack['token']}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert [row["out.label"] for row in response.json()] == _labels(WEIGHTS)


def test_png_bytes_binary_and_base64_over_kafka(
    stack: dict[str, Any], images_pipeline: Pipeline
) -> None:
    images = _images()
    binary = codecs.encode(
        pa.RecordBatch.from_pydict({"png": pa.array(images, pa.binary())}), codecs.ARROW_STREAM
    )
    text = json.dumps([{"png": base64.b64encode(png).decode()} for png in images]).encode()
    answers = asyncio.run(
        kafka_round_trip(
            stack["kafka_bootstrap"],
            images_pipeline.topics(),
            [(codecs.ARROW_STREAM, binary), (codecs.PANDAS_RECORDS, text)],
        )
    )
    assert len(answers) == 2
    for reply in answers.values():
        assert reply.batch.column("out.label").to_pylist() == _labels(WEIGHTS)


def test_big_inputs_are_dropped_from_the_logs_and_excluded_ones_never_logged(
    images_pipeline: Pipeline,
) -> None:
    noise = png_bytes(np.random.default_rng(1).integers(0, 255, (96, 96, 3), np.uint8))
    small = _images()[0]
    assert len(noise) > 16_384 > len(small)
    marker = "policy-" + str(np.random.default_rng().integers(1 << 30))
    result = images_pipeline.infer(
        pa.table({"png": pa.array([noise, small], pa.binary()), "note": [marker, marker]})
    )
    assert result.num_rows == 2  # the answer keeps everything
    logs = images_pipeline.logs(limit=200)
    assert "in.note" not in logs.columns
    ours = logs[logs["request_id"] == logs.loc[logs["in.png"].isna(), "request_id"].iloc[0]]
    ours = ours.sort_values("row")
    assert ours["in.png"].isna().tolist() == [True, False]
    assert [list(d) for d in ours[META_DROPPED]] == [["in.png"], []]
    assert list(ours["out.label"])[1] == _labels(WEIGHTS)[0]


def test_a_model_generation_that_renames_its_outputs_replaces_one_step(
    client: Client, images_pipeline: Pipeline, tmp_path: Path
) -> None:
    weights = WEIGHTS[:, ::-1].copy()  # another model: other labels, other output name
    assert _labels(weights) != _labels(WEIGHTS)
    v2 = client.upload_model("img-cls", _classifier(tmp_path / "v2.onnx", "fetch_name_0", weights))
    images_pipeline.replace_with_model_step(1, v2, outputs={"fetch_name_0": "probs"})
    images_pipeline.deploy(timeout_s=300, quiet=True)
    result = images_pipeline.infer(pa.table({"png": pa.array(_images(), pa.binary())}))
    assert result.column("out.label").to_pylist() == _labels(weights)


def test_a_requirement_that_cannot_be_installed_fails_the_redeploy_and_the_old_version_serves(
    client: Client, images_pipeline: Pipeline, tmp_path: Path
) -> None:
    serving = images_pipeline.status()["version"]
    bad = client.upload_model(
        "img-pre",
        step_zip(
            tmp_path / "bad.zip", {"pre.py": PRE}, "Pillow\nweir-no-such-package-anywhere==1.0\n"
        ),
    )
    images_pipeline.replace_with_model_step(0, bad)
    with pytest.raises(
        WaitForDeployError,
        match="No matching distribution found for weir-no-such-package-anywhere==1.0",
    ):
        images_pipeline.deploy(timeout_s=300, quiet=True)
    assert images_pipeline.status()["version"] == serving
    result = images_pipeline.infer(pa.table({"png": pa.array(_images(), pa.binary())}))
    assert result.num_rows == len(COLOURS)
