"""Workspaces and tags."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel

from control.names import check_name
from control.records import ModelVersion, Workspace
from control.server.routes.pipelines import PipelineInfo, pipeline_info
from control.server.state import get_state

router = APIRouter()


class NameBody(BaseModel):
    name: str


@router.post("/workspaces")
def create_workspace(body: NameBody, request: Request) -> Workspace:
    return get_state(request).registry.ensure_workspace(check_name(body.name, "workspace name"))


@router.get("/workspaces")
def list_workspaces(request: Request) -> list[Workspace]:
    return get_state(request).registry.list_workspaces()


@router.get("/workspaces/{name}")
def get_workspace(name: str, request: Request) -> Workspace:
    return get_state(request).registry.get_workspace(name)


class TagBody(BaseModel):
    tag: str


@router.post("/tags")
def create_tag(body: TagBody, request: Request, workspace: str = "default") -> TagBody:
    get_state(request).registry.create_tag(workspace, body.tag)
    return body


@router.get("/tags")
def list_tags(request: Request, workspace: str = "default") -> list[str]:
    return get_state(request).registry.list_tags(workspace)


@router.post("/tags/{tag}/pipelines/{name}")
def tag_pipeline(
    tag: str, name: str, request: Request, workspace: str = "default", remove: bool = False
) -> PipelineInfo:
    state = get_state(request)
    return pipeline_info(state, state.registry.tag_pipeline(workspace, name, tag, not remove))


@router.post("/tags/{tag}/models/{name}")
def tag_model(
    tag: str, name: str, request: Request, workspace: str = "default", remove: bool = False
) -> ModelVersion:
    return get_state(request).registry.tag_model(workspace, name, tag, not remove)
