"""Model upload, configuration and listing."""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import BaseModel

from control import removal
from control.artifacts import ArtifactStore
from control.names import check_file_name, check_name
from control.records import ModelVersion
from control.server.state import ServerState, get_state
from control.trust import check_runtime
from engine.definition import RuntimeName
from engine.errors import ModelLoadError
from engine.runtimes import get_runtime

router = APIRouter()

_BY_SUFFIX: dict[str, RuntimeName] = {".onnx": "onnx", ".py": "python", ".zip": "python"}
"""A `.zip` is a Python step with its modules and requirements (engine.runtimes._archive)."""


def _inspect(state: ServerState, model: ModelVersion) -> ModelVersion:
    """Load the stored file with its runtime to check it and read its signature.

    A Python step is imported, so this runs its module-level code in the server: see
    README "Security" (WEIR_ALLOW_PYTHON_STEPS=false refuses Python steps before this).
    """
    runtime = get_runtime(model.runtime)
    state.settings.run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=state.settings.run_dir) as tmp:
        path = Path(tmp) / check_file_name(model.file_name)
        path.write_bytes(state.artifacts.get(model.sha))
        signature = runtime.inspect(path)
    return model.model_copy(update={"inputs": signature.inputs, "outputs": signature.outputs})


async def _receive(request: Request, artifacts: ArtifactStore) -> tuple[Path, str, int]:
    """Write the request body to the store's incoming folder as it arrives (the body limit
    stops it at WEIR_MAX_UPLOAD_BYTES); returns the file, its sha256 and its size."""
    digest, size = hashlib.sha256(), 0
    fd, name = tempfile.mkstemp(dir=artifacts.incoming())
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            async for chunk in request.stream():
                digest.update(chunk)
                file.write(chunk)
                size += len(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, digest.hexdigest(), size


@router.post("/models/{name}")
async def upload_model(
    name: str,
    request: Request,
    filename: str,
    runtime: str | None = None,
    workspace: str = "default",
) -> ModelVersion:
    """Upload a model file (the raw request body); a new version each time."""
    state = get_state(request)
    check_name(name, "model name")
    check_file_name(filename)
    chosen = runtime or _BY_SUFFIX.get(Path(filename).suffix)
    if chosen is None:
        raise ModelLoadError(
            f"cannot tell the runtime of {filename!r}: name the file .onnx, "
            ".py or .zip (a Python step with its requirements.txt), or give "
            "the runtime (--runtime onnx|python in the CLI, runtime='onnx' in "
            "the SDK)"
        )
    get_runtime(chosen)  # unknown names fail here with the valid list
    check_runtime(state.settings, chosen, name)
    await asyncio.to_thread(state.registry.get_workspace, workspace)
    received, sha, size = await _receive(request, state.artifacts)
    claimed = request.headers.get("x-content-sha256")
    if not size or (claimed and claimed != sha):
        received.unlink()
        raise ModelLoadError(
            "the model file is empty: upload the file itself"
            if not size
            else "the uploaded bytes do not match the x-content-sha256 header: "
            "the upload was corrupted; upload again"
        )
    state.artifacts.adopt(received, sha)
    model = ModelVersion(
        name=name,
        version=str(uuid.uuid4()),
        sha=sha,
        runtime=chosen,
        workspace=workspace,
        file_name=filename,
        size=size,
    )
    return await asyncio.to_thread(lambda: state.registry.add_model(_inspect(state, model)))


class ConfigureBody(BaseModel):
    runtime: RuntimeName
    version: str | None = None


@router.post("/models/{name}/configure")
async def configure_model(
    name: str, body: ConfigureBody, request: Request, workspace: str = "default"
) -> ModelVersion:
    """Set a model version's runtime, checking the file loads with it."""
    state = get_state(request)
    model = await asyncio.to_thread(state.registry.get_model, workspace, name, body.version)
    check_runtime(state.settings, body.runtime, name)
    if model.runtime == body.runtime:
        return model
    configured = model.model_copy(update={"runtime": body.runtime})
    return await asyncio.to_thread(lambda: state.registry.update_model(_inspect(state, configured)))


@router.get("/models")
def list_models(request: Request, workspace: str = "default") -> list[ModelVersion]:
    return get_state(request).registry.list_models(workspace)


@router.get("/models/{name}")
def get_model(
    name: str, request: Request, version: str | None = None, workspace: str = "default"
) -> ModelVersion:
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
