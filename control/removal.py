"""Deleting pipelines and models: refused while they are in use, and nothing left behind.

A pipeline goes with its versions and its logs (its challengers' too); its Kafka topics
are kept (producers may still hold their names; delete them with your Kafka tools). A
model goes with every version, and with each file no other model version refers to.
"""

from __future__ import annotations

from control.artifacts import ArtifactStore
from control.errors import InUseError
from control.registry import Registry
from streams.logstore import LogStore
from streams.shadow_logs import shadow_stores


def delete_pipeline(registry: Registry, store: LogStore, workspace: str, name: str) -> None:
    """Delete an undeployed pipeline, its versions and its logs."""
    registry.get_pipeline(workspace, name)
    deployment = registry.get_deployment(workspace, name)
    if deployment is not None:
        raise InUseError(
            f"pipeline {name!r} is deployed (version {deployment.version}): "
            f"undeploy it first (pipeline.undeploy(), or `weir pipelines undeploy "
            f"{name}`)"
        )
    registry.delete_pipeline(workspace, name)
    for logged in [name, *shadow_stores(store, workspace, name)]:
        store.delete(workspace, logged)


def delete_model(registry: Registry, artifacts: ArtifactStore, workspace: str, name: str) -> int:
    """Delete every version of a model no pipeline runs; returns how many there were."""
    users = registry.pipelines_using(workspace, name)
    if users:
        raise InUseError(
            f"model {name!r} is used by pipeline(s) {', '.join(users)} (in one "
            "of their versions): delete those pipelines first"
        )
    versions = registry.delete_model(workspace, name)
    for sha in {v.sha for v in versions} - registry.shas_in_use():
        artifacts.delete(sha)
    return len(versions)
