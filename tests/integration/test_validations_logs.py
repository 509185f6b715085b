"""Validations, anomalies and log queries (the guide's "Anomaly Testing"), on the real stack."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from control.demo.models import diabetes_data
from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine.errors import ExpressionError

pytestmark = pytest.mark.slow

POST = """
import numpy as np
def process_data(input_data):
    return {"price": input_data["variable"][:, 0], "double": input_data["variable"][:, 0] * 2}
"""


@pytest.fixture(scope="module")
def housing(client: Client, diabetes_onnx: Path) -> Pipeline:
    """The guide's example: flag prices of 100 or more."""
    model = client.upload_model("anomaly-housing", diabetes_onnx)
    pipeline = client.build_pipeline("anomaly-housing-pipeline").add_model_step(model)
    pipeline.add_validation("price too high", model.outputs[0][0] < 100.0)
    pipeline.add_validation("not negative", "anomaly-housing.outputs[0][0] >= 0.0")
    return pipeline.deploy(quiet=True)


def _rows(n: int) -> tuple[pd.DataFrame, np.ndarray]:
    """The first n rows of the diabetes data, as the guide's `tensor` column."""
    x, _ = diabetes_data()
    return pd.DataFrame({"tensor": [row.tolist() for row in x[:n]]}), x[:n]


def test_failing_rows_carry_check_failures(housing: Pipeline, diabetes_onnx: Path) -> None:
    import onnxruntime as ort

    frame, x = _rows(40)
    prices = ort.InferenceSession(str(diabetes_onnx)).run(None, {"float_input": x})[0][:, 0]
    high = prices >= 100.0
    assert high.any() and (~high).any()  # the data has both kinds
    result = housing.infer(frame)
    assert list(result["anomaly.price too high"]) == list(high)
    assert list(result["anomaly.not negative"]) == list(prices < 0)
    assert list(result["check_failures"]) == list(high.astype(int) + (prices < 0).astype(int))
    assert list(result["anomaly.count"]) == list(result["check_failures"])


def test_logs_valid_false_returns_only_failures(housing: Pipeline) -> None:
    frame, _ = _rows(40)
    housing.infer(frame)
    invalid = housing.logs(limit=1000, valid=False)
    valid = housing.logs(limit=1000, valid=True)
    assert len(invalid) > 0 and len(valid) > 0
    assert (invalid["anomaly.count"] > 0).all()
    assert (valid["anomaly.count"] == 0).all()


def test_a_validation_on_a_model_outside_the_pipeline_is_refused(
    client: Client, diabetes_onnx: Path
) -> None:
    model = client.upload_model("lonely", diabetes_onnx)
    other = client.upload_model("elsewhere", diabetes_onnx)
    pipeline = client.build_pipeline("bad-validation").add_model_step(model)
    pipeline.add_validation("wrong model", other.outputs[0][0] < 1.0)
    with pytest.raises(ExpressionError, match=r"refers to \['elsewhere'\]"):
        pipeline.deploy(quiet=True)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "anomaly-housing.outputs[0].__class__",
        "anomaly-housing.outputs[0][0] < 1 and True",
    ],
)
def test_unsafe_or_malformed_validations_are_refused(housing: Pipeline, text: str) -> None:
    with pytest.raises(ExpressionError):
        housing.add_validation("unsafe", text)


def test_time_ranges_need_both_ends_and_filter(housing: Pipeline) -> None:
    frame, _ = _rows(3)
    before = datetime.now(UTC) - timedelta(seconds=1)
    housing.infer(frame)
    after = datetime.now(UTC) + timedelta(seconds=1)
    with pytest.raises(ValueError, match="both"):
        housing.logs(start_datetime=before)
    inside = housing.logs(limit=1000, start_datetime=before, end_datetime=after)
    assert len(inside) >= 3
    long_ago = housing.logs(
        start_datetime=before - timedelta(days=2), end_datetime=before - timedelta(days=1)
    )
    assert len(long_ago) == 0


def test_dataset_selection_and_arrow(housing: Pipeline) -> None:
    housing.infer(_rows(2)[0])
    only = housing.logs(limit=5, dataset=["time", "out"])
    assert set(only.columns) == {"time", "out.variable"}
    dropped = housing.logs(limit=5, dataset_exclude=["in", "metadata"])
    assert not any(c.startswith(("in.", "metadata.")) for c in dropped.columns)
    assert "out.variable" in dropped.columns
    table = housing.logs(limit=5, arrow=True, dataset=["anomaly"])
    assert isinstance(table, pa.Table)
    assert set(table.column_names) == {
        "anomaly.count",
        "anomaly.price too high",
        "anomaly.not negative",
    }
    with pytest.raises(Exception, match="unknown dataset 'nope'"):
        housing.logs(dataset=["nope"])


def test_http_logs_paging_by_cursor(stack: dict[str, Any], housing: Pipeline) -> None:
    housing.infer(_rows(25)[0])
    housing.logs(limit=1)  # the log store holds the answer now (the pages below do not wait)
    url, headers = f"{housing.url()}/logs", {"Authorization": f"Bearer {stack['token']}"}
    seen: list[tuple[str, int]] = []
    cursor = None
    for _ in range(100):
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        response = httpx.get(url, params=params, headers=headers, timeout=30)
        assert response.status_code == 200
        rows = response.json()
        seen += [(r["request_id"], r["row"]) for r in rows]
        cursor = response.headers.get("x-next-cursor")
        if not cursor:
            break
    total = len(housing.logs(limit=100_000))
    assert len(seen) == total == len(set(seen))
    assert httpx.get(url, headers={}, timeout=30).status_code == 401


def test_export_logs_splits_files_with_every_row_once(housing: Pipeline, tmp_path: Path) -> None:
    housing.infer(_rows(30)[0])
    total = len(housing.logs(limit=100_000))
    files = housing.export_logs(tmp_path / "json", data_size_limit="4KiB", progress=False)
    assert len(files) > 1
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len({(r["request_id"], r["row"]) for r in lines}) == len(lines) == total
    arrow_files = housing.export_logs(tmp_path / "arrow", arrow=True, valid=False, progress=False)
    rows = sum(pa.ipc.open_file(f).read_all().num_rows for f in arrow_files)
    assert rows == len(housing.logs(limit=100_000, valid=False))


def test_outputs_that_change_between_versions_stay_queryable(
    client: Client, diabetes_onnx: Path, tmp_path: Path
) -> None:
    model = client.upload_model("schema-model", diabetes_onnx)
    pipeline = client.build_pipeline("schema-change").add_model_step(model).deploy(quiet=True)
    pipeline.infer(_rows(2)[0])
    post_file = tmp_path / "post.py"
    post_file.write_text(POST)
    post = client.upload_model("schema-post", post_file)
    pipeline.add_model_step(post).deploy(quiet=True)
    pipeline.infer(_rows(2)[0])
    logs = pipeline.logs(limit=100)
    new, old = logs.iloc[:2], logs.iloc[2:4]
    assert new["out.price"].notna().all() and new["out.variable"].isna().all()
    assert old["out.variable"].notna().all() and old["out.price"].isna().all()
    pipeline.undeploy()


def test_logs_right_after_inference_see_it(housing: Pipeline) -> None:
    marker = np.full((1, 10), 0.0425, dtype=np.float32)
    housing.infer(pd.DataFrame({"tensor": [marker[0].tolist()]}))
    newest = housing.logs(limit=1)
    assert newest["in.tensor"].iloc[0][0] == pytest.approx(0.0425)


def test_background_compaction_merges_files_and_keeps_every_row(
    housing: Pipeline, stack_home: Path
) -> None:
    """Each inference's rows land in a file; the files seen then are merged into one per hour
    (the merged file is new: it holds rows written after every file seen before it)."""
    import time

    root = stack_home / "logstore" / "default" / "anomaly-housing-pipeline"
    seen: set[Path] = set()
    for _ in range(4):
        housing.infer(_rows(3)[0])
        housing.logs(limit=1)  # the rows are in the store
        seen |= set(root.glob("date=*/hour=*/*.parquet"))
    before = housing.logs(limit=100_000)
    assert seen, f"no log files under {root}"
    deadline = time.monotonic() + 30
    while True:
        hours = [p for p in root.glob("date=*/hour=*") if p.is_dir()]
        merged = all(len(list(h.glob("*.parquet"))) == 1 for h in hours)
        if (hours and merged) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert hours and merged, {h.name: len(list(h.glob("*.parquet"))) for h in hours}
    after_files = set(root.glob("date=*/hour=*/*.parquet"))
    assert seen - after_files and len(after_files) < len(seen), (seen, after_files)
    after = housing.logs(limit=100_000)
    assert sorted(zip(after["request_id"], after["row"])) == sorted(
        zip(before["request_id"], before["row"])
    )


def test_dict_input_gets_the_guides_inference_result(housing: Pipeline) -> None:
    """The guide: `pipeline.infer(test_input)` with a dict -> [InferenceResult({...})]."""
    _, x = _rows(40)
    results = housing.infer({"tensor": [row.tolist() for row in x]})
    assert isinstance(results, list) and len(results) == 1
    result = results[0]
    assert result["pipeline_name"] == "anomaly-housing-pipeline"
    assert result.model()[0] == "anomaly-housing"
    failed = {f["False"]["expr"] for f in result["check_failures"]}
    assert "anomaly-housing.outputs[0][0] < 100.0" in failed
    assert result["outputs"][0]["Float"]["dim"] == [40, 1]
    assert result.data()[0].shape == (40, 1)
    assert len(result["original_data"]["tensor"]) == 40
