"""What the server's routes share: built once in the lifespan, reached through `get_state`."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from fastapi import Request

from control.artifacts import ArtifactStore
from control.deployer import Deployer
from control.errors import AuthError
from control.gateway import Gateway
from control.registry import Registry
from control.settings import Settings
from streams.agents.log import LogAgent
from streams.logstore import LogStore
from streams.topics import TopicMap


@dataclass
class ServerState:
    settings: Settings
    registry: Registry
    artifacts: ArtifactStore
    topics: TopicMap
    deployer: Deployer
    gateway: Gateway
    log_store: LogStore
    log_agent: LogAgent


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.weir
    return state


async def require_token(request: Request) -> None:
    """Every route but the health checks depends on this. (Async: FastAPI runs a plain
    function dependency on a worker thread, a thread hop for every request.)"""
    expected = get_state(request).settings.token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(token, expected):
        raise AuthError("missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                        "(the token is in stack.json under WEIR_HOME)")
