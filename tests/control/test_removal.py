"""control/removal.py: deleting pipelines and models, against a real redis-server."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from control.artifacts import ArtifactStore
from control.embedded import Service
from control.errors import EntityNotFoundError, InUseError
from control.records import Deployment, ModelVersion
from control.registry import Registry
from control.removal import delete_model, delete_pipeline
from engine.definition import ModelStep, PipelineSpec
from streams.logstore import LogStore
from streams.shadow_logs import shadow_pipeline

WS = "default"


@pytest.fixture
def registry(redis_service: Service) -> Registry:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    registry.ensure_workspace(WS)
    return registry


def _upload(registry: Registry, artifacts: ArtifactStore, name: str, data: bytes) -> ModelVersion:
    return registry.add_model(
        ModelVersion(
            name=name,
            version=str(uuid.uuid4()),
            sha=artifacts.put(data),
            runtime="onnx",
            workspace=WS,
            file_name=f"{name}.onnx",
            size=len(data),
        )
    )


def _log_rows() -> pa.Table:
    return pa.table(
        {
            "time": pa.array([0], pa.timestamp("ms", "UTC")),
            "request_id": ["r"],
            "row": pa.array([0], pa.int32()),
            "anomaly.count": pa.array([0], pa.int32()),
            "check_failures": pa.array([0], pa.int32()),
            "metadata.pipeline_version": ["v"],
            "metadata.elapsed_ns": [1],
            "metadata.model": ["m"],
        }
    )


def test_a_pipeline_goes_with_its_versions_and_logs_but_not_while_deployed(
    registry: Registry, tmp_path: Path
) -> None:
    store = LogStore(tmp_path / "logs")
    model = _upload(registry, ArtifactStore(tmp_path / "art"), "m", b"model")
    registry.get_or_create_pipeline(WS, "p")
    version = registry.add_version(WS, "p", PipelineSpec(steps=[ModelStep(model=model.ref())]))
    for logged in ("p", shadow_pipeline("p", "challenger"), "p2"):
        store.append(WS, logged, _log_rows())
    registry.set_deployment(Deployment(workspace=WS, pipeline="p", version=version.version))
    with pytest.raises(InUseError, match=r"pipeline 'p' is deployed .*: undeploy it first"):
        delete_pipeline(registry, store, WS, "p")
    registry.delete_deployment(WS, "p")
    delete_pipeline(registry, store, WS, "p")
    assert registry.list_pipelines(WS) == [] and registry.versions(WS, "p") == []
    assert store.pipelines() == [(WS, "p2")]
    with pytest.raises(EntityNotFoundError, match="pipeline 'p' not found"):
        delete_pipeline(registry, store, WS, "p")


def test_a_model_goes_with_its_files_but_not_while_a_pipeline_runs_it(
    registry: Registry, tmp_path: Path
) -> None:
    artifacts = ArtifactStore(tmp_path / "art")
    first, second = (_upload(registry, artifacts, "m", data) for data in (b"one", b"two"))
    shared = _upload(registry, artifacts, "copy", b"two")  # another model, same file
    registry.get_or_create_pipeline(WS, "p")
    registry.add_version(WS, "p", PipelineSpec(steps=[ModelStep(model=first.ref())]))
    registry.add_version(WS, "p", PipelineSpec(steps=[ModelStep(model=shared.ref())]))
    with pytest.raises(InUseError, match=r"model 'm' is used by pipeline\(s\) p"):
        delete_model(registry, artifacts, WS, "m")  # an older version of p runs it
    registry.delete_pipeline(WS, "p")
    assert delete_model(registry, artifacts, WS, "m") == 2
    assert [m.name for m in registry.list_models(WS)] == ["copy"]
    assert not artifacts.exists(first.sha) and artifacts.exists(second.sha)
