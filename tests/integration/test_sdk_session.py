"""The SDK as a new user meets it, on the real stack: one request to list pipelines, numpy
and DataFrame inputs matched to the model by name, logs with the columns of their rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from control.errors import InferenceError
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._deployed import one_model_pipeline

pytestmark = pytest.mark.slow

X = np.random.default_rng(31).random((4, 10), dtype=np.float32)


@pytest.fixture(scope="module")
def pipeline(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    with one_model_pipeline(client, "sdk-diabetes", diabetes_onnx) as deployed:
        yield deployed


def test_list_pipelines_is_one_request(client: Client, pipeline: Pipeline) -> None:
    model = client.get_model("sdk-diabetes")
    for name in ("sdk-more-1", "sdk-more-2"):
        client.build_pipeline(name).add_model_step(model).create_version()
    sent: list[str] = []

    def count(request: httpx.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    client._session.api._http.event_hooks["request"].append(count)
    try:
        listed = {p.name: p for p in client.list_pipelines()}
    finally:
        client._session.api._http.event_hooks["request"].remove(count)
    assert sent == ["GET /pipelines"]
    assert [m.name for m in listed["sdk-more-1"].steps()] == ["sdk-diabetes"]
    assert listed["sdk-more-1"].steps()[0].input_specs[0].name == "float_input"


@pytest.mark.parametrize(
    "data",
    [
        X,
        pd.DataFrame({"float_input": list(X)}),
        pd.DataFrame({"tensor": list(X)}),
        pd.DataFrame({f"feature{i}": X[:, i] for i in range(10)}),
    ],
    ids=["numpy", "input-name", "tensor", "feature-columns"],
)
def test_inputs_a_new_user_sends_are_answered(pipeline: Pipeline, data: object) -> None:
    assert len(pipeline.infer(data)) == len(X)


def test_a_misnamed_column_is_refused(pipeline: Pipeline) -> None:
    with pytest.raises(
        InferenceError, match="data's column is named 'tensr': name it 'float_input' or 'tensor'"
    ):
        pipeline.infer(pd.DataFrame({"tensr": list(X)}))


def test_logs_have_the_columns_of_the_rows_asked_for(pipeline: Pipeline) -> None:
    pipeline.infer(pd.DataFrame({"tensor": list(X)}))
    pipeline.infer(pd.DataFrame({f"feature{i}": X[:, i] for i in range(10)}))
    newest = pipeline.logs(limit=len(X))
    assert "in.tensor" not in newest.columns and "in.feature0" in newest.columns
    assert "row" in newest.columns and "metadata.row" not in newest.columns
    both = pipeline.logs(limit=2 * len(X))
    assert {"in.tensor", "in.feature0"} <= set(both.columns)


def test_no_docs_page_that_needs_a_cdn_but_the_schema(stack: dict[str, Any]) -> None:
    url, auth = stack["server_url"], {"Authorization": f"Bearer {stack['token']}"}
    assert httpx.get(f"{url}/docs", headers=auth).status_code == 404
    assert httpx.get(f"{url}/redoc", headers=auth).status_code == 404
    assert "/pipelines/{name}" in httpx.get(f"{url}/openapi.json", headers=auth).json()["paths"]
