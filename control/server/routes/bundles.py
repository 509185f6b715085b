"""Publishing a deployed version as a bundle, and importing one."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response

from control.bundle import read_bundle, write_bundle
from control.errors import DeploymentError
from control.records import Deployment, DeploymentConfig, ModelVersion, PipelineVersion
from control.server.state import ServerState, get_state
from control.trust import check_definition
from engine.pipeline import compile_validations

router = APIRouter()


@router.post("/pipelines/{name}/publish")
def publish(name: str, request: Request, workspace: str = "default") -> Response:
    """The deployed version (else the newest) as a bundle; marks the pipeline published."""
    state = get_state(request)
    pipeline = state.registry.get_pipeline(workspace, name)
    deployment = state.registry.get_deployment(workspace, name)
    version = state.registry.get_version(
        workspace, name, deployment.version if deployment else None
    )
    data = write_bundle(version, state.artifacts)
    state.registry.save_pipeline(pipeline.model_copy(update={"published": True}))
    return Response(
        data,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{name}.weir"'},
    )


@router.post("/import")
async def import_bundle(request: Request, workspace: str = "default") -> Deployment:
    """Register a bundle's models (checked by sha256) and pipeline version, then deploy it."""
    state = get_state(request)
    body = await request.body()  # at most WEIR_MAX_UPLOAD_BYTES: the body limit sees to it
    version = await asyncio.to_thread(_register, state, body, workspace)
    return await state.deployer.deploy(version, DeploymentConfig())


def _register(state: ServerState, body: bytes, workspace: str) -> PipelineVersion:
    """Check the bundle, store its model files and register its models and pipeline version
    (the registry and the disk: in a thread, off the server's event loop)."""
    bundle = read_bundle(body, state.settings.max_upload_bytes)
    state.registry.get_workspace(workspace)
    check_definition(state.settings, bundle.definition)
    compile_validations(bundle.definition)
    if not bundle.definition.steps:
        raise DeploymentError("the bundle's pipeline has no steps: publish a version with steps")
    for ref in bundle.definition.models():
        known = {m.version for m in state.registry.model_versions(workspace, ref.name)}
        if ref.version not in known:
            state.registry.add_model(
                ModelVersion(
                    **ref.model_dump(),
                    workspace=workspace,
                    file_name=f"{ref.name}.{ref.runtime}",
                    size=len(bundle.files[ref.sha]),
                )
            )
        state.artifacts.put(bundle.files[ref.sha])
    state.registry.get_or_create_pipeline(workspace, bundle.pipeline)
    return state.registry.add_version(workspace, bundle.pipeline, bundle.definition)
