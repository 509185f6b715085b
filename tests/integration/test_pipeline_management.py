"""The guide's pipeline-management calls through the SDK, on the real stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from control import (
    DeploymentConfigBuilder,
    EntityNotFoundError,
    InvalidNameError,
    LimitError,
    WaitForDeployError,
)
from control.demo.models import diabetes_regressor
from control.sdk.client import Client
from control.sdk.deploy_wait import wait_running
from control.settings import Settings
from control.stack import down, up
from engine import codecs
from engine.errors import ModelLoadError
from tests.integration._deployed import deployed

pytestmark = pytest.mark.slow

X = np.random.default_rng(3).random((4, 10), dtype=np.float32)
FRAME = pd.DataFrame({"tensor": [row.tolist() for row in X]})

PRE = """
import numpy as np
def process_data(input_data):
    return {"float_input": (input_data["tensor"] * 2.0).astype(np.float32)}
"""

POST = """
import pandas as pd
def wallaroo_json(data):
    out = pd.DataFrame({"price": [float(v[0]) for v in data["variable"]]})
    out["expensive"] = out["price"] > 150.0
    return out
"""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mgmt")
    (root / "preprocess.py").write_text(PRE)
    (root / "postprocess.py").write_text(POST)
    return {
        "pre": root / "preprocess.py",
        "post": root / "postprocess.py",
        "a": diabetes_regressor(root / "a.onnx", alpha=1.0),
        "b": diabetes_regressor(root / "b.onnx", alpha=0.01),
    }


@pytest.fixture(scope="module")
def models(client: Client, files: dict[str, Path]) -> dict[str, Any]:
    return {
        "pre": client.upload_model("preprocess", files["pre"]).configure("python"),
        "post": client.upload_model("postprocess", files["post"]).configure("python"),
        "a": client.upload_model("house-a", files["a"]).configure("onnx"),
        "b": client.upload_model("house-b", files["b"]).configure("onnx"),
    }


def _models_running(pipeline: Any) -> list[str]:
    status = pipeline.status()
    assert status["status"] == "Running"
    return [m["name"] for m in status["engines"][0]["model_statuses"]["models"]]


@pytest.mark.parametrize(
    "name", ["my.pipeline", "my_pipeline", "MyPipeline", "trailing-", "x" * 64, ""]
)
def test_every_invalid_name_is_refused(client: Client, files: dict[str, Path], name: str) -> None:
    for call in (
        lambda: client.build_pipeline(name),
        lambda: client.upload_model(name, files["a"]),
        lambda: client.create_workspace(name),
    ):
        with pytest.raises(InvalidNameError, match="lowercase ASCII letters"):
            call()


def test_the_server_refuses_invalid_names_too(client: Client) -> None:
    with pytest.raises(InvalidNameError, match="'Bad.Name'"):
        client._session.json("POST", "/pipelines", json={"name": "Bad.Name"})


def test_build_pipeline_returns_the_existing_pipeline(client: Client) -> None:
    first = client.build_pipeline("mgmt-same")
    again = client.build_pipeline("mgmt-same")
    assert again._info["created"] == first._info["created"]
    assert [p.name for p in client.list_pipelines()].count("mgmt-same") == 1
    assert first.status() == {"status": "Pipeline mgmt-same is not deployed"}


def test_bad_uploads_fail_with_the_reason(client: Client, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load"):
        client.upload_model("junk", junk)
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ModelLoadError, match="neither process_data"):
        client.upload_model("empty", empty)


def test_uploading_again_makes_a_new_version(client: Client, files: dict[str, Path]) -> None:
    first = client.upload_model("twice", files["a"])
    second = client.upload_model("twice", files["b"])
    assert first.version != second.version and first.sha != second.sha
    assert client.get_model("twice").version == second.version
    assert client.get_model("twice", first.version).sha == first.sha
    with pytest.raises(EntityNotFoundError):
        client.get_model("never-uploaded")


def test_step_editing_stays_local_until_create_version(
    client: Client, models: dict[str, Any]
) -> None:
    pipeline = client.build_pipeline("mgmt-steps")
    pipeline.add_model_step(models["a"]).add_model_step(models["post"])
    pipeline.replace_with_model_step(0, models["b"])
    assert [m.name for m in pipeline.steps()] == ["house-b", "postprocess"]
    with pytest.raises(IndexError, match=r"valid: 0\.\.1"):
        pipeline.remove_step(5)
    assert client.get_pipeline("mgmt-steps").steps() == []  # nothing stored yet
    first = pipeline.create_version()
    pipeline.remove_step(1)
    second = pipeline.create_version()
    pipeline.clear()
    assert pipeline.steps() == []
    versions = pipeline.versions()
    assert [v.version for v in versions] == [second.version, first.version]
    assert versions[0].steps == ["house-b"] and versions[1].steps == ["house-b", "postprocess"]
    assert [m.name for m in client.get_pipeline("mgmt-steps").steps()] == ["house-b"]
    assert "mgmt-steps" in repr(versions[0]) and "<table>" in versions[0]._repr_html_()


def test_pre_model_post_pipeline(
    client: Client, models: dict[str, Any], files: dict[str, Path]
) -> None:
    """The guide's demand-curve shape: Python pre-processing, ONNX model, Python post-processing."""
    import onnxruntime as ort

    pipeline = (
        client.build_pipeline("mgmt-demand")
        .add_model_step(models["pre"])
        .add_model_step(models["a"])
        .add_model_step(models["post"])
    )
    with deployed(pipeline):
        result = pipeline.infer(FRAME)
        expected = ort.InferenceSession(str(files["a"])).run(None, {"float_input": X * 2.0})[0][
            :, 0
        ]
        np.testing.assert_allclose(result["out.price"], expected, rtol=1e-5)
        assert list(result["out.expensive"]) == list(expected > 150.0)
        assert _models_running(pipeline) == ["preprocess", "house-a", "postprocess"]


def test_hot_replace_redeploy_and_deploy_a_previous_version(
    client: Client, models: dict[str, Any]
) -> None:
    with deployed(client.build_pipeline("mgmt-swap").add_model_step(models["a"])) as pipeline:
        before = pipeline.infer(FRAME)["out.variable"]
        pipeline.replace_with_model_step(0, models["b"]).deploy(quiet=True)
        assert _models_running(pipeline) == ["house-b"]
        after = pipeline.infer(FRAME)
        assert set(after["metadata.model"].str.split("@").str[0]) == {"house-b"}
        assert not np.allclose(np.stack(before), np.stack(after["out.variable"]))

        old = pipeline.versions()[1]
        assert old.steps == ["house-a"] and not old.deployed
        old.deploy("mgmt-swap", old.model_configs(), quiet=True)
        assert _models_running(pipeline) == ["house-a"]
        assert pipeline.versions()[1].deployed
        again = client.get_pipeline("mgmt-swap", version=old.version)
        assert [m.name for m in again.steps()] == ["house-a"]


def test_replicas_share_the_work(client: Client, models: dict[str, Any]) -> None:
    """Requests go to random partitions; with 24 of them, each replica's partitions get some
    (all on one replica's half: a chance of 2 in 2**24)."""
    config = DeploymentConfigBuilder().replica_count(2).cpus(1).memory("512Mi").build()
    pipeline = client.build_pipeline("mgmt-replicas").add_model_step(models["a"])
    with deployed(pipeline, config):
        engines = pipeline.status()["engines"]
        assert len(engines) == 2 and {e["status"] for e in engines} == {"Running"}
        for _ in range(REQUESTS):
            assert len(pipeline.infer(FRAME)) == len(X)
        processed = _processed_once_reported(pipeline, REQUESTS)
        assert len(processed) == 2 and all(n > 0 for n in processed.values()), processed


REQUESTS = 24


def _processed_once_reported(pipeline: Any, requests: int, wait_s: float = 30.0) -> dict[str, int]:
    """Messages each worker answered, once their heartbeats account for all `requests`."""
    deadline = time.monotonic() + wait_s
    while True:
        processed = {e["name"]: e["processed"] for e in pipeline.status()["engines"]}
        if sum(processed.values()) >= requests or time.monotonic() > deadline:
            return processed
        time.sleep(0.2)


def test_a_deploy_that_cannot_start_is_undone(client: Client, models: dict[str, Any]) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("needs a machine without CUDA to make the workers fail")
    pipeline = client.build_pipeline("mgmt-nogpu").add_model_step(models["a"])
    with pytest.raises(WaitForDeployError, match="CUDA"):
        pipeline.deploy(DeploymentConfigBuilder().gpus(1).build(), timeout_s=30, quiet=True)
    assert pipeline.status() == {"status": "Pipeline mgmt-nogpu is not deployed"}


def test_infer_from_file_json_and_arrow(
    client: Client, models: dict[str, Any], tmp_path: Path
) -> None:
    with deployed(client.build_pipeline("mgmt-files").add_model_step(models["a"])) as pipeline:
        _infer_from_files(pipeline, tmp_path)


def _infer_from_files(pipeline: Any, tmp_path: Path) -> None:
    as_json = tmp_path / "data.json"
    as_json.write_text(json.dumps([{"tensor": row.tolist()} for row in X]))
    as_arrow = tmp_path / "data.arrow"
    as_arrow.write_bytes(codecs.encode(codecs.batch_from_arrays({"tensor": X}), codecs.ARROW_FILE))
    from_json = pipeline.infer_from_file(as_json)
    from_arrow = pipeline.infer_from_file(as_arrow)
    assert isinstance(from_json, pd.DataFrame) and isinstance(from_arrow, pa.Table)
    np.testing.assert_allclose(
        np.stack(from_json["out.variable"]),
        np.stack(from_arrow.column("out.variable").to_pylist()),
        rtol=1e-6,
    )
    odd = tmp_path / "data.txt"
    odd.write_bytes(as_arrow.read_bytes())
    assert pipeline.infer_from_file(odd, data_format="arrow").num_rows == len(X)
    assert pipeline.url().endswith("/pipelines/mgmt-files")
    assert pipeline._deployment._url() == pipeline.url()


def test_workspaces_scope_pipelines_and_models(
    client: Client, files: dict[str, Path], stack_home: Path
) -> None:
    other = Client(settings=Settings.discover(home=stack_home))
    team = other.create_workspace("team-b")
    assert "team-b" in [w.name for w in other.list_workspaces()]
    other.set_current_workspace(team)
    assert other.get_current_workspace().name == "team-b"
    other.upload_model("only-here", files["a"])
    other.build_pipeline("team-pipeline")
    assert [p.name for p in other.list_pipelines()] == ["team-pipeline"]
    assert "team-pipeline" not in [p.name for p in client.list_pipelines()]
    with pytest.raises(EntityNotFoundError):
        client.get_model("only-here")


def test_tags_show_in_listings(client: Client, models: dict[str, Any]) -> None:
    pipeline = client.build_pipeline("mgmt-tagged")
    tag = client.create_tag("prod")
    tag.add_to_pipeline(pipeline).add_to_model(models["a"])
    assert "prod" in [t.tag for t in client.list_tags()]
    listed = {p.name: p for p in client.list_pipelines()}
    assert listed["mgmt-tagged"]._info["tags"] == ["prod"]
    assert "prod" in client.get_model("house-a")._record["tags"]
    table = repr(client.list_pipelines())
    for field in (
        "name",
        "created",
        "last_updated",
        "deployed",
        "tags",
        "versions",
        "steps",
        "published",
    ):
        assert field in table
    tag.remove_from_pipeline(pipeline)
    assert client.get_pipeline("mgmt-tagged")._info["tags"] == []


def test_publish_and_import_a_bundle(
    client: Client, models: dict[str, Any], tmp_path: Path, stack_home: Path
) -> None:
    with deployed(client.build_pipeline("mgmt-publish").add_model_step(models["a"])) as pipeline:
        bundle = pipeline.publish(tmp_path / "bundle.weir")
        assert client.get_pipeline("mgmt-publish")._info["published"] is True
    elsewhere = Client(settings=Settings.discover(home=stack_home))
    elsewhere.set_current_workspace(elsewhere.create_workspace("imported"))
    deployment = elsewhere.import_bundle(bundle)
    assert deployment["pipeline"] == "mgmt-publish"
    imported = elsewhere.get_pipeline("mgmt-publish")
    try:
        wait_running(imported._status, deployment["version"], 60, quiet=True)
        assert len(imported.infer(FRAME)) == len(X)
    finally:
        imported.undeploy()


def test_cli_json_output_and_exit_codes(stack_home: Path, client: Client) -> None:
    client.build_pipeline("mgmt-cli")
    env = {**os.environ, "WEIR_HOME": str(stack_home)}

    def weir(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "control.cli", *args],
            env=env,
            text=True,
            capture_output=True,
            timeout=60,
        )

    listed = weir("pipelines", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "mgmt-cli" in [p["name"] for p in json.loads(listed.stdout)]
    shown = json.loads(weir("pipelines", "show", "mgmt-cli", "--json").stdout)
    assert shown["topics"]["input"] == "default.mgmt-cli.in"
    missing = weir("pipelines", "show", "no-such-pipeline")
    assert missing.returncode == 1 and "not found" in missing.stderr
    assert weir("pipelines", "--help").returncode == 0
    assert weir("models", "list", "--json").returncode == 0


@pytest.fixture(scope="module")
def small_stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("small")
    os.environ["WEIR_MAX_PIPELINES"] = "1"
    try:
        up(Settings(home=home), detach=True, say=lambda _: None)
    finally:
        del os.environ["WEIR_MAX_PIPELINES"]
    yield Client(settings=Settings.discover(home=home))
    down(Settings(home=home), say=lambda _: None)


def test_the_pipeline_limit(small_stack: Client, files: dict[str, Path]) -> None:
    model = small_stack.upload_model("m", files["a"])
    first = small_stack.build_pipeline("one").add_model_step(model).deploy(quiet=True)
    second = small_stack.build_pipeline("two").add_model_step(model)
    with pytest.raises(LimitError, match="MAX_PIPELINES_LIMIT_EXCEEDED") as raised:
        second.deploy(quiet=True)
    assert "undeploy" in str(raised.value)
    first.deploy(quiet=True)  # redeploying a deployed pipeline takes no new slot
    first.undeploy()
    second.deploy(quiet=True)
    assert second.status()["status"] == "Running"
    second.undeploy()
