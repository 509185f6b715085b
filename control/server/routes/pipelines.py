"""Pipelines, their versions and deployments."""

from __future__ import annotations

import asyncio
from datetime import datetime

from fastapi import APIRouter, Request
from pydantic import BaseModel

from control import removal
from control.names import check_name
from control.pipeline_specs import VersionBody, resolve
from control.pipeline_status import PipelineStatus
from control.records import Deployment, DeploymentConfig, Pipeline, PipelineVersion
from control.server.state import ServerState, get_state
from control.trust import check_definition
from engine.definition import PipelineSpec

router = APIRouter()


class PipelineInfo(BaseModel):
    """A pipeline as listings show it (the guide's fields plus the newest definition)."""

    workspace: str
    name: str
    created: datetime
    last_updated: datetime
    deployed: bool
    deployed_version: str | None
    tags: list[str]
    versions: list[str]
    steps: list[str]
    published: bool
    definition: PipelineSpec | None


def pipeline_info(state: ServerState, pipeline: Pipeline) -> PipelineInfo:
    versions = state.registry.versions(pipeline.workspace, pipeline.name)
    deployment = state.registry.get_deployment(pipeline.workspace, pipeline.name)
    newest = versions[0].definition if versions else None
    return PipelineInfo(
        **pipeline.model_dump(),
        deployed=deployment is not None,
        deployed_version=deployment.version if deployment else None,
        versions=[v.version for v in versions],
        steps=[s.summary() for s in newest.steps] if newest else [],
        definition=newest,
    )


class CreateBody(BaseModel):
    name: str


@router.post("/pipelines")
def build_pipeline(body: CreateBody, request: Request, workspace: str = "default") -> PipelineInfo:
    """Create a pipeline, or return the existing one of that name."""
    state = get_state(request)
    check_name(body.name, "pipeline name")
    state.registry.get_workspace(workspace)
    return pipeline_info(state, state.registry.get_or_create_pipeline(workspace, body.name))


@router.get("/pipelines")
def list_pipelines(request: Request, workspace: str = "default") -> list[PipelineInfo]:
    state = get_state(request)
    return [pipeline_info(state, p) for p in state.registry.list_pipelines(workspace)]


@router.get("/pipelines/{name}")
def get_pipeline(name: str, request: Request, workspace: str = "default") -> PipelineInfo:
    state = get_state(request)
    return pipeline_info(state, state.registry.get_pipeline(workspace, name))


@router.delete("/pipelines/{name}")
async def delete_pipeline(
    name: str, request: Request, workspace: str = "default"
) -> dict[str, str]:
    """Delete an undeployed pipeline, its versions and its logs (409 while deployed)."""
    state = get_state(request)
    await asyncio.to_thread(state.registry.get_pipeline, workspace, name)
    await state.log_agent.sync(workspace, name)  # rows answered so far land now, not later
    await asyncio.to_thread(
        removal.delete_pipeline, state.registry, state.log_store, workspace, name
    )
    return {"deleted": name}


class VersionInfo(PipelineVersion):
    """A version as `pipeline.versions()` shows it."""

    name: str
    deployed: bool
    tags: list[str]
    steps: list[str]


def _version_info(state: ServerState, version: PipelineVersion) -> VersionInfo:
    deployment = state.registry.get_deployment(version.workspace, version.pipeline)
    pipeline = state.registry.get_pipeline(version.workspace, version.pipeline)
    return VersionInfo(
        **version.model_dump(),
        name=version.pipeline,
        deployed=deployment is not None and deployment.version == version.version,
        tags=pipeline.tags,
        steps=[s.summary() for s in version.definition.steps],
    )


@router.post("/pipelines/{name}/versions")
def create_version(
    name: str, body: VersionBody, request: Request, workspace: str = "default"
) -> VersionInfo:
    """Store the steps as a version (the newest one again if nothing changed)."""
    state = get_state(request)
    return _version_info(
        state, state.registry.add_version(workspace, name, resolve(state.registry, workspace, body))
    )


@router.get("/pipelines/{name}/versions")
def list_versions(name: str, request: Request, workspace: str = "default") -> list[VersionInfo]:
    """Newest first."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    return [_version_info(state, v) for v in state.registry.versions(workspace, name)]


@router.get("/pipelines/{name}/versions/{version}")
def get_version(
    name: str, version: str, request: Request, workspace: str = "default"
) -> VersionInfo:
    state = get_state(request)
    return _version_info(state, state.registry.get_version(workspace, name, version))


class DeployBody(BaseModel):
    version: str | None = None
    config: DeploymentConfig = DeploymentConfig()


@router.post("/pipelines/{name}/deploy")
async def deploy(
    name: str, body: DeployBody, request: Request, workspace: str = "default"
) -> Deployment:
    """Start workers for a version (the newest by default); poll status for Running."""
    state = get_state(request)
    version = await asyncio.to_thread(state.registry.get_version, workspace, name, body.version)
    check_definition(state.settings, version.definition)
    return await state.deployer.deploy(version, body.config)


@router.post("/pipelines/{name}/undeploy")
async def undeploy(name: str, request: Request, workspace: str = "default") -> PipelineInfo:
    state = get_state(request)
    pipeline = await asyncio.to_thread(state.registry.get_pipeline, workspace, name)
    await state.deployer.undeploy(workspace, name)
    return await asyncio.to_thread(pipeline_info, state, pipeline)


@router.get("/pipelines/{name}/status")
def status(name: str, request: Request, workspace: str = "default") -> PipelineStatus:
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    return state.deployer.status(workspace, name)


@router.get("/pipelines/{name}/topics")
def topics(name: str, request: Request, workspace: str = "default") -> dict[str, str]:
    """The pipeline's stable topics, for producers and subscribers that skip HTTP."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    return {role: spec.name for role, spec in state.topics.pipeline_topics(workspace, name).items()}
