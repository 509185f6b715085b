"""Open Inference Protocol v2 through Triton's own HTTP client (tritonclient[http]), as its
users call it, on the real stack; and both inference routes' answer to an unknown pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.http import (
    InferenceServerClient,
    InferInput,
    InferRequestedOutput,
)
from tritonclient.utils import InferenceServerException

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._deployed import one_model_pipeline

pytestmark = pytest.mark.slow

X = np.random.default_rng(11).random((3, 10), dtype=np.float32)

WORDS = """
import numpy as np
def process_data(input_data):
    words = input_data["word"]
    return {"doubled": input_data["id"] * 2,
            "shout": np.array([w.upper() + "!" for w in words], dtype=object)}
"""


@pytest.fixture(scope="module")
def deployed(
    client: Client, diabetes_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Pipeline]]:
    """An ONNX pipeline (FP32 in and out) and a Python one (INT64 and BYTES in and out)."""
    words = tmp_path_factory.mktemp("oip") / "words.py"
    words.write_text(WORDS)
    with (
        one_model_pipeline(client, "oip-onnx", diabetes_onnx) as onnx,
        one_model_pipeline(client, "oip-python", words, "python") as python,
    ):
        yield {"onnx": onnx, "python": python}


@pytest.fixture(scope="module")
def triton(stack: dict[str, Any]) -> Iterator[InferenceServerClient]:
    client = InferenceServerClient(url=stack["server_url"].removeprefix("http://"))
    yield client
    client.close()


@pytest.fixture(scope="module")
def auth(stack: dict[str, Any]) -> dict[str, str]:
    """Passed as a copy: tritonclient adds its binary-data header to the dict it is given."""
    return {"Authorization": f"Bearer {stack['token']}"}


def expected(model: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(model)).run(None, {"float_input": x})[0]


def test_server_health_needs_no_token_and_metadata_does(
    triton: InferenceServerClient, auth: dict[str, str]
) -> None:
    assert triton.is_server_live() and triton.is_server_ready()
    meta = triton.get_server_metadata(headers=dict(auth))
    assert meta["name"] == "weir" and "binary_tensor_data" in meta["extensions"]
    with pytest.raises(InferenceServerException, match="bearer token") as refused:
        triton.get_server_metadata()
    assert refused.value.status() == "401"


def test_model_ready_follows_the_deployment(
    triton: InferenceServerClient,
    client: Client,
    deployed: dict[str, Pipeline],
    auth: dict[str, str],
) -> None:
    version = deployed["onnx"].status()["version"]
    assert triton.is_model_ready("oip-onnx", headers=dict(auth))
    assert triton.is_model_ready("oip-onnx", version, headers=dict(auth))
    assert not triton.is_model_ready("oip-onnx", "0" * 8, headers=dict(auth))
    client.build_pipeline("oip-idle")
    assert not triton.is_model_ready("oip-idle", headers=dict(auth))
    assert not triton.is_model_ready("oip-nowhere", headers=dict(auth))


def test_model_metadata_has_the_protocols_shape(
    triton: InferenceServerClient, deployed: dict[str, Pipeline], auth: dict[str, str]
) -> None:
    meta = triton.get_model_metadata("oip-onnx", headers=dict(auth))
    assert meta == {
        "name": "oip-onnx",
        "versions": [deployed["onnx"].status()["version"]],
        "platform": "weir",
        "inputs": [{"name": "float_input", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [{"name": "variable", "datatype": "FP32", "shape": [-1, 1]}],
    }
    with pytest.raises(
        InferenceServerException, match="pipeline 'oip-nowhere' not found"
    ) as missing:
        triton.get_model_metadata("oip-nowhere", headers=dict(auth))
    assert missing.value.status() == "404"


@pytest.mark.parametrize("binary", [True, False])
def test_fp32_infer_answers_the_models_output_by_its_name(
    triton: InferenceServerClient,
    deployed: dict[str, Pipeline],
    diabetes_onnx: Path,
    auth: dict[str, str],
    binary: bool,
) -> None:
    tensor = InferInput("float_input", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    outputs = None if binary else [InferRequestedOutput("variable", binary_data=False)]
    result = triton.infer(
        "oip-onnx", [tensor], outputs=outputs, request_id="r-1", headers=dict(auth)
    )
    np.testing.assert_allclose(result.as_numpy("variable"), expected(diabetes_onnx, X), rtol=1e-5)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == ["variable"]
    assert response["id"] == "r-1"
    assert response["model_version"] == deployed["onnx"].status()["version"]
    assert {
        "time",
        "check_failures",
        "anomaly.count",
        "metadata.pipeline_version",
        "metadata.elapsed_ns",
    } <= set(response["parameters"])


def test_int64_and_bytes_inputs_and_the_outputs_filter(
    triton: InferenceServerClient, deployed: dict[str, Pipeline], auth: dict[str, str]
) -> None:
    ids = InferInput("id", [2], "INT64")
    ids.set_data_from_numpy(np.array([4, 21], np.int64))
    words = InferInput("word", [2], "BYTES")
    words.set_data_from_numpy(np.array([b"hi", "caf\u00e9".encode()], dtype=object))
    both = triton.infer("oip-python", [ids, words], headers=dict(auth))
    assert both.as_numpy("doubled").tolist() == [8, 42]
    assert both.as_numpy("shout").tolist() == [b"HI!", "CAF\u00c9!".encode()]
    only = triton.infer(
        "oip-python",
        [ids, words],
        headers=dict(auth),
        outputs=[InferRequestedOutput("shout", binary_data=False)],
    )
    assert [o["name"] for o in only.get_response()["outputs"]] == ["shout"]
    assert only.as_numpy("doubled") is None
    with pytest.raises(InferenceServerException, match="'nope' is not an output") as wrong:
        triton.infer(
            "oip-python", [ids, words], headers=dict(auth), outputs=[InferRequestedOutput("nope")]
        )
    assert wrong.value.status() == "400"


def test_infer_on_a_version(
    triton: InferenceServerClient, deployed: dict[str, Pipeline], auth: dict[str, str]
) -> None:
    tensor = InferInput("tensor", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    version = deployed["onnx"].status()["version"]
    assert triton.infer("oip-onnx", [tensor], model_version=version, headers=dict(auth)).as_numpy(
        "variable"
    ).shape == (3, 1)
    with pytest.raises(InferenceServerException, match="not found") as other:
        triton.infer("oip-onnx", [tensor], model_version="0" * 8, headers=dict(auth))
    assert other.value.status() == "404"


def test_a_misnamed_input_is_refused(
    triton: InferenceServerClient, deployed: dict[str, Pipeline], auth: dict[str, str]
) -> None:
    tensor = InferInput("float_inputs", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    with pytest.raises(
        InferenceServerException,
        match="column is named 'float_inputs': name it 'float_input' or 'tensor'",
    ):
        triton.infer("oip-onnx", [tensor], headers=dict(auth))


def test_an_unknown_pipeline_is_404_and_an_undeployed_one_409_on_both_routes(
    stack: dict[str, Any], client: Client, auth: dict[str, str]
) -> None:
    client.build_pipeline("oip-idle")
    body = {
        "inputs": [{"name": "tensor", "shape": [1, 10], "datatype": "FP32", "data": X[0].tolist()}]
    }
    url = stack["server_url"]
    for name, status in (("oip-nowhere", 404), ("oip-idle", 409)):
        oip = httpx.post(f"{url}/v2/models/{name}/infer", json=body, headers=dict(auth))
        plain = httpx.post(
            f"{url}/pipelines/{name}", json=[{"tensor": X[0].tolist()}], headers=dict(auth)
        )
        assert (oip.status_code, plain.status_code) == (status, status), (oip.text, plain.text)
        assert name in oip.json()["error"] and name in plain.json()["message"]
