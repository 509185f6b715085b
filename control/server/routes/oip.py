"""Open Inference Protocol v2 routes over the same gateway as `POST /pipelines/<name>`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from control.server.state import get_state
from engine.oip import InferenceRequest, InferenceResponse, batch_to_outputs, request_to_batch

router = APIRouter(prefix="/v2")


@router.get("/models/{name}")
def metadata(name: str, request: Request, workspace: str = "default") -> dict[str, Any]:
    """A pipeline's metadata: its version and the models it runs."""
    state = get_state(request)
    state.registry.get_pipeline(workspace, name)
    deployment = state.registry.get_deployment(workspace, name)
    version = state.registry.get_version(workspace, name,
                                         deployment.version if deployment else None)
    return {"name": name, "versions": [version.version], "platform": "weir",
            "models": [m.model_dump(include={"name", "version", "sha", "inputs", "outputs"})
                       for m in version.definition.models()]}


@router.post("/models/{name}/infer")
async def infer(name: str, body: InferenceRequest, request: Request,
                workspace: str = "default") -> InferenceResponse:
    """Each input tensor is a column (first axis = rows); outputs are the result columns."""
    state = get_state(request)
    result = await state.gateway.infer(workspace, name, request_to_batch(body))
    deployment = state.registry.get_deployment(workspace, name)
    return InferenceResponse(model_name=name, id=body.id, outputs=batch_to_outputs(result),
                             model_version=deployment.version if deployment else None)
