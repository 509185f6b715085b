"""The web console: its page and static assets (no token), and the read-only JSON it reads
besides the control API (token required).

The page asks for the bearer token once and keeps it in the browser's session storage;
everything it shows comes from token-protected routes, so the page and its scripts
hold nothing a visitor without the token could not see.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel

from control.log_series import recent_series
from control.pipeline_lag import pipeline_lag
from control.pipeline_status import Engine
from control.records import Deployment, PipelineVersion
from control.server.state import ServerState, get_state

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

page = APIRouter()
"""Served without the token."""
router = APIRouter()


@page.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The console's single page (it shows the login form until it has a token)."""
    return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class PipelineRow(BaseModel):
    """One pipeline as the console's list shows it."""

    name: str
    created: datetime
    last_updated: datetime
    status: str
    deployed_version: str | None
    replicas: int | None
    engines: list[Engine]
    sidekicks: list[Engine]


@router.get("/console/pipelines")
def pipelines(request: Request, workspace: str = "default") -> list[PipelineRow]:
    """Every pipeline of the workspace with its deployment's state and workers."""
    state = get_state(request)
    rows = []
    for pipeline in state.registry.list_pipelines(workspace):
        deployment = state.registry.get_deployment(workspace, pipeline.name)
        status = state.deployer.status(workspace, pipeline.name)
        rows.append(
            PipelineRow(
                name=pipeline.name,
                created=pipeline.created,
                last_updated=pipeline.last_updated,
                status=status.status if deployment else "Not deployed",
                deployed_version=deployment.version if deployment else None,
                replicas=deployment.config.replicas if deployment else None,
                engines=status.engines,
                sidekicks=status.sidekicks,
            )
        )
    return rows


@router.get("/pipelines/{name}/series")
async def series(
    name: str,
    request: Request,
    workspace: str = "default",
    minutes: float = Query(15, gt=0, le=24 * 60),
    bucket_s: float = Query(10, ge=1, le=3600),
) -> dict[str, list[Any]]:
    """The last `minutes` of the pipeline's logged traffic in buckets of `bucket_s`: rows/s,
    latency p50/p99 (ms), error rate and check-failure rate (control.log_series)."""
    state = get_state(request)

    def read() -> dict[str, list[Any]]:
        state.registry.get_pipeline(workspace, name)
        return recent_series(state.log_store, workspace, name, minutes=minutes, bucket_s=bucket_s)

    return await asyncio.to_thread(read)


@router.get("/pipelines/{name}/lag")
async def lag(name: str, request: Request, workspace: str = "default") -> list[dict[str, Any]]:
    """Consumer lag per partition of the deployed version's topics (empty if not deployed)."""
    state = get_state(request)
    deployed = await asyncio.to_thread(_deployed_version, state, workspace, name)
    if deployed is None:
        return []
    return [asdict(p) for p in await pipeline_lag(state.lag, state.topics, *deployed)]


def _deployed_version(
    state: ServerState, ws: str, name: str
) -> tuple[Deployment, PipelineVersion] | None:
    """The pipeline's deployment and its version (None if not deployed); registry reads,
    made in a thread: the console asks every few seconds, Redis may not answer."""
    state.registry.get_pipeline(ws, name)
    deployment = state.registry.get_deployment(ws, name)
    if deployment is None:
        return None
    return deployment, state.registry.get_version(ws, name, deployment.version)
