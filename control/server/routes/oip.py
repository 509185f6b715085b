"""Open Inference Protocol v2 routes: a pipeline is an OIP model, its deployed version the
model version; inference goes through the same gateway as `POST /pipelines/<name>`.

`/v2/health/live` and `/v2/health/ready` are health checks (no token, in routes/health.py);
every route here needs the bearer token. Errors answer `{"error": "<message>"}` as OIP asks.
"""

from __future__ import annotations

import asyncio
from importlib.metadata import version as package_version
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from control.errors import EntityNotFoundError
from control.server.state import ServerState, get_state
from engine import oip
from streams.trace import trace_headers

router = APIRouter(prefix="/v2")


@router.get("")
def server_metadata() -> dict[str, Any]:
    """The server's name, version and the protocol extensions it supports."""
    return {
        "name": "weir",
        "version": package_version("weir"),
        "extensions": ["binary_tensor_data"],
    }


def _deployed_version(state: ServerState, workspace: str, name: str) -> str | None:
    state.registry.get_pipeline(workspace, name)  # 404 for an unknown pipeline
    deployment = state.registry.get_deployment(workspace, name)
    return deployment.version if deployment else None


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
def model_metadata(
    name: str, request: Request, version: str | None = None, workspace: str = "default"
) -> oip.ModelMetadata:
    """The pipeline's inputs (its first model's) and outputs (its last model's), of `version`
    or else of the deployed version (the newest if none is); `versions` lists the deployed one."""
    state = get_state(request)
    deployed = _deployed_version(state, workspace, name)
    chosen = version or deployed
    spec = (
        state.registry.get_version(workspace, name, chosen).definition
        if chosen or state.registry.versions(workspace, name)
        else None
    )
    return oip.model_metadata(name, [deployed] if deployed else [], spec)


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
def model_ready(
    name: str, request: Request, version: str | None = None, workspace: str = "default"
) -> JSONResponse:
    """200 when the pipeline (at `version`, if given) is deployed and Running, else 400."""
    state = get_state(request)
    deployed = _deployed_version(state, workspace, name)
    status = state.deployer.status(workspace, name).status
    if deployed is None:
        reason = f"pipeline {name!r} is not deployed"
    elif version is not None and version != deployed:
        reason = f"version {version} of pipeline {name!r} is not deployed (version {deployed} is)"
    elif status != "Running":
        reason = f"pipeline {name!r} is {status}"
    else:
        return JSONResponse({"name": name, "ready": True})
    return JSONResponse({"name": name, "ready": False, "error": reason}, status_code=400)


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(
    name: str, request: Request, version: str | None = None, workspace: str = "default"
) -> Response:
    """Each input tensor is a column (first axis = rows); outputs are the pipeline's model
    outputs by name, the rest of each result row is in `parameters`. Binary tensor data
    (Triton's extension, tritonclient's default) is read and, when asked for, written."""
    state = get_state(request)
    body = await request.body()  # at most WEIR_MAX_PAYLOAD_BYTES: the body limit sees to it
    parsed, binary = oip.read_request(body, request.headers.get(oip.HEADER_LENGTH))
    if version is not None:
        deployed = (await state.gateway.deployment(workspace, name)).version
        if version != deployed:  # the one looked up may predate a redeploy: ask again
            deployed = (await state.gateway.deployment(workspace, name, fresh=True)).version
        if version != deployed:  # 404 if there is no such version
            await asyncio.to_thread(state.registry.get_version, workspace, name, version)
            raise EntityNotFoundError(
                "deployed version",
                f"{name}@{version}",
                f"version {deployed} is deployed; infer on it, or deploy this one",
            )
    result = await state.gateway.infer(
        workspace,
        name,
        oip.request_to_batch(parsed, binary),
        trace=trace_headers(request.headers),
    )
    content, header_length = oip.response_body(parsed, result, name)
    if header_length is None:
        return Response(content, media_type="application/json")
    return Response(
        content,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(header_length)},
    )
