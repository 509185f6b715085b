"""engine/oip.py: Open Inference Protocol v2 requests and responses <-> record batches.

Binary bodies are built and read by tritonclient's own (pure) helpers, so these check
weir against the client users have, without a server.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput

from engine import codecs
from engine.definition import (
    ModelRef,
    ModelStep,
    PipelineSpec,
    RandomSplitStep,
    ShadowStep,
    SplitArm,
    TensorSpec,
)
from engine.errors import CodecError
from engine.oip import (
    InferenceRequest,
    RequestedOutput,
    Tensor,
    model_metadata,
    read_request,
    request_to_batch,
    response_body,
)

X = np.arange(6, dtype=np.float32).reshape(2, 3)
IDS = np.array([7, 9], dtype=np.int64)
WORDS = np.array([b"caf\xc3\xa9", b"b"], dtype=object)


def _inputs(binary: bool) -> list[InferInput]:
    inputs = [
        InferInput("tensor", [2, 3], "FP32"),
        InferInput("id", [2], "INT64"),
        InferInput("word", [2], "BYTES"),
    ]
    for item, data in zip(inputs, (X, IDS, WORDS)):
        item.set_data_from_numpy(data, binary_data=binary)
    return inputs


@pytest.mark.parametrize("binary", [False, True])
def test_fp32_int64_and_bytes_inputs_become_columns_with_rows_first(binary: bool) -> None:
    body, length = InferenceServerClient.generate_request_body(_inputs(binary), request_id="r1")
    request, rest = read_request(body, None if length is None else str(length))
    batch = request_to_batch(request, rest)
    assert request.id == "r1"
    tensor = codecs.column_to_ndarray(batch.column("tensor"))
    assert tensor.dtype == np.float32 and tensor.tolist() == X.tolist()
    assert batch.column("id").type == pa.int64() and batch.column("id").to_pylist() == [7, 9]
    assert batch.column("word").to_pylist() == ["café", "b"]


def result_batch() -> pa.RecordBatch:
    """A pipeline's result rows as the gateway returns them."""
    return pa.RecordBatch.from_pydict(
        {
            "time": pa.array([1_700_000_000_000] * 2).cast(pa.timestamp("ms", tz="UTC")),
            "in.tensor": codecs.ndarray_to_column(X),
            "out.variable": codecs.ndarray_to_column(np.array([[1.5], [2.5]], np.float32)),
            "out.label": pa.array(["low", "high"]),
            "out._model_split": pa.array(['[{"name":"a"}]'] * 2),
            "check_failures": pa.array([0, 1], pa.int32()),
            "anomaly.count": pa.array([0, 1], pa.int32()),
            "metadata.pipeline_version": pa.array(["v-1"] * 2),
            "metadata.row": pa.array([0, 1], pa.int32()),
        }
    )


def test_outputs_are_the_models_by_their_names_and_the_rest_is_parameters() -> None:
    body, length = response_body(InferenceRequest(id="r1", inputs=[]), result_batch(), "p")
    answer = json.loads(body)
    assert length is None
    assert [(o["name"], o["datatype"], o["shape"]) for o in answer["outputs"]] == [
        ("variable", "FP32", [2, 1]),
        ("label", "BYTES", [2]),
    ]
    assert answer["outputs"][0]["data"] == [1.5, 2.5]
    assert (answer["model_name"], answer["model_version"], answer["id"]) == ("p", "v-1", "r1")
    params = answer["parameters"]
    assert set(params) == {
        "time",
        "out._model_split",
        "check_failures",
        "anomaly.count",
        "metadata.pipeline_version",
        "metadata.row",
    }
    assert all(isinstance(v, str) for v in params.values())  # OIP parameters are scalars
    assert json.loads(params["check_failures"]) == [0, 1]
    assert json.loads(params["time"])[0].startswith("2023-11-14T22:13:20")


def test_the_outputs_filter_returns_only_what_was_asked() -> None:
    request = InferenceRequest(inputs=[], outputs=[RequestedOutput(name="label")])
    answer = json.loads(response_body(request, result_batch(), "p")[0])
    assert [o["name"] for o in answer["outputs"]] == ["label"]
    wrong = InferenceRequest(inputs=[], outputs=[RequestedOutput(name="out.variable")])
    with pytest.raises(
        CodecError,
        match="'out.variable' is not an output of pipeline 'p'; "
        "its outputs are 'variable', 'label'",
    ):
        response_body(wrong, result_batch(), "p")


@pytest.mark.parametrize("requested", [None, ["variable", "label"]])
def test_binary_outputs_read_back_with_tritonclient(requested: list[str] | None) -> None:
    outputs = [InferRequestedOutput(n, binary_data=True) for n in requested or []]
    body, length = InferenceServerClient.generate_request_body(_inputs(False), outputs=outputs)
    request, _ = read_request(body, None if length is None else str(length))
    content, header = response_body(request, result_batch(), "p")
    assert header is not None  # no outputs named: tritonclient asks for all in binary
    result = InferenceServerClient.parse_response_body(content, header_length=header)
    np.testing.assert_array_equal(result.as_numpy("variable"), [[1.5], [2.5]])
    assert result.as_numpy("label").tolist() == [b"low", b"high"]


@pytest.mark.parametrize(
    ("tensor", "message"),
    [
        (Tensor(name="t", shape=[2, 2], datatype="FP32", data=[1, 2, 3]), "has 3 values but shape"),
        (
            Tensor(name="t", shape=[1], datatype="COMPLEX", data=[1]),
            "datatype 'COMPLEX'; use one of",
        ),
        (Tensor(name="t", shape=[], datatype="FP32", data=[1]), "first axis is the rows"),
        (Tensor(name="t", shape=[1], datatype="FP32"), "neither data nor binary_data_size"),
        (Tensor(name="t", shape=[2], datatype="FP32", data=[[1], [2, 3]]), "different lengths"),
        (Tensor(name="t", shape=[1], datatype="INT64", data=["x"]), "not INT64"),
        (
            Tensor(name="t", shape=[1], datatype="FP32", parameters={"binary_data_size": 8}),
            "claims 8 bytes of binary data but 4 are left",
        ),
    ],
)
def test_bad_tensors_say_what_is_wrong(tensor: Tensor, message: str) -> None:
    with pytest.raises(CodecError, match=message):
        request_to_batch(InferenceRequest(inputs=[tensor]), b"\0" * 4)


def test_unclaimed_binary_data_is_refused() -> None:
    request = InferenceRequest(inputs=[Tensor(name="t", shape=[1], datatype="FP32", data=[1])])
    with pytest.raises(CodecError, match="4 bytes of binary data that no input claims"):
        request_to_batch(request, b"\0" * 4)


@pytest.mark.parametrize(
    ("body", "length", "message"),
    [
        (b'{"inputs": [{"name": "t"}]}', None, r"inputs.0.shape: Field required"),
        (b"not json", None, "not an Open Inference Protocol request"),
        (b'{"inputs": []}', "99", "must be the length of the JSON part"),
        (b'{"inputs": []}', "x", "must be the length of the JSON part"),
    ],
)
def test_malformed_requests_say_what_is_wrong(
    body: bytes, length: str | None, message: str
) -> None:
    with pytest.raises(CodecError, match=message):
        read_request(body, length)


def _model(name: str, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> ModelRef:
    return ModelRef(
        name=name, version="1", sha="0" * 64, runtime="onnx", inputs=inputs, outputs=outputs
    )


FIRST = _model(
    "first",
    [TensorSpec(name="float_input", dtype="float32", shape=[None, 10])],
    [TensorSpec(name="hidden", dtype="float32", shape=["N", 4])],
)
LAST = _model(
    "last",
    [TensorSpec(name="hidden", dtype="float32", shape=[None, 4])],
    [
        TensorSpec(name="label", dtype="object", shape=[None]),
        TensorSpec(name="score", dtype="int64", shape=[None, 2]),
    ],
)


@pytest.mark.parametrize(
    "last_step",
    [
        ModelStep(model=LAST),
        RandomSplitStep(
            arms=[SplitArm(weight=1, models=[LAST]), SplitArm(weight=1, models=[FIRST])]
        ),
        ShadowStep(champion=LAST, challengers=[FIRST]),
    ],
)
def test_metadata_has_the_first_models_inputs_and_the_last_ones_outputs(last_step: object) -> None:
    spec = PipelineSpec(steps=[ModelStep(model=FIRST), last_step])
    meta = model_metadata("p", ["v-1"], spec).model_dump()
    assert meta == {
        "name": "p",
        "versions": ["v-1"],
        "platform": "weir",
        "inputs": [{"name": "float_input", "datatype": "FP32", "shape": [-1, 10]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "INT64", "shape": [-1, 2]},
        ],
    }


def test_metadata_of_a_pipeline_without_steps_is_empty() -> None:
    assert model_metadata("p", [], None).model_dump() == {
        "name": "p",
        "versions": [],
        "platform": "weir",
        "inputs": [],
        "outputs": [],
    }
