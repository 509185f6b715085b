"""Model upload, configuration and listing."""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel

from control import removal
from control.errors import PayloadTooLarge
from control.names import check_name
from control.records import ModelVersion
from control.server.state import ServerState, get_state
from engine.definition import RuntimeName
from engine.errors import ModelLoadError
from engine.runtimes import get_runtime

router = APIRouter()

_BY_SUFFIX: dict[str, RuntimeName] = {".onnx": "onnx", ".py": "python", ".zip": "python"}
"""A `.zip` is a Python step with its modules and requirements (engine.runtimes._archive)."""


def _inspect(state: ServerState, model: ModelVersion) -> ModelVersion:
    """Load the stored file with its runtime to check it and read its signature."""
    runtime = get_runtime(model.runtime)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / model.file_name
        path.write_bytes(state.artifacts.get(model.sha))
        signature = runtime.inspect(path)
    return model.model_copy(update={"inputs": signature.inputs, "outputs": signature.outputs})


@router.post("/models/{name}")
async def upload_model(name: str, request: Request, filename: str, runtime: str | None = None,
                       workspace: str = "default") -> ModelVersion:
    """Upload a model file (the raw request body); a new version each time."""
    state = get_state(request)
    check_name(name, "model name")
    body = await request.body()
    if len(body) > state.settings.max_payload_bytes:
        raise PayloadTooLarge(f"model file is {len(body)} bytes; the limit is "
                              f"{state.settings.max_payload_bytes} (WEIR_MAX_PAYLOAD_BYTES)")
    claimed = request.headers.get("x-content-sha256")
    if claimed and claimed != hashlib.sha256(body).hexdigest():
        raise ModelLoadError("the uploaded bytes do not match the x-content-sha256 header: "
                             "the upload was corrupted; upload again")
    chosen = runtime or _BY_SUFFIX.get(Path(filename).suffix)
    if chosen is None:
        raise ModelLoadError(f"cannot tell the runtime of {filename!r}: name the file .onnx, "
                             ".py or .zip (a Python step with its requirements.txt), or give "
                             "the runtime (--runtime onnx|python in the CLI, runtime='onnx' in "
                             "the SDK)")
    get_runtime(chosen)  # unknown names fail here with the valid list
    state.registry.get_workspace(workspace)
    sha = state.artifacts.put(body)
    model = ModelVersion(name=name, version=str(uuid.uuid4()), sha=sha, runtime=chosen,
                         workspace=workspace, file_name=Path(filename).name, size=len(body))
    model = await asyncio.to_thread(_inspect, state, model)
    return state.registry.add_model(model)


class ConfigureBody(BaseModel):
    runtime: RuntimeName
    version: str | None = None


@router.post("/models/{name}/configure")
async def configure_model(name: str, body: ConfigureBody, request: Request,
                          workspace: str = "default") -> ModelVersion:
    """Set a model version's runtime, checking the file loads with it."""
    state = get_state(request)
    model = state.registry.get_model(workspace, name, body.version)
    if model.runtime != body.runtime:
        model = await asyncio.to_thread(_inspect, state, model.model_copy(update={"runtime": body.runtime}))
        state.registry.update_model(model)
    return model


@router.get("/models")
def list_models(request: Request, workspace: str = "default") -> list[ModelVersion]:
    return get_state(request).registry.list_models(workspace)


@router.get("/models/{name}")
def get_model(name: str, request: Request, version: str | None = None,
              workspace: str = "default") -> ModelVersion:
    return get_state(request).registry.get_model(workspace, name, version)


@router.delete("/models/{name}")
def delete_model(name: str, request: Request, workspace: str = "default") -> dict[str, object]:
    """Delete every version of a model that no pipeline runs (409 if one does)."""
    state = get_state(request)
    count = removal.delete_model(state.registry, state.artifacts, workspace, name)
    return {"deleted": name, "versions": count}


@router.get("/models/{name}/versions")
def model_versions(name: str, request: Request, workspace: str = "default") -> list[ModelVersion]:
    versions = get_state(request).registry.model_versions(workspace, name)
    return list(reversed(versions))
