"""What the server's routes share: built once in the lifespan, reached through `get_state`."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from control.artifacts import ArtifactStore
from control.credentials import Token
from control.deployer import Deployer
from control.gateway import Gateway
from control.log_queries import LogQueries
from control.registry import Registry
from control.settings import Settings
from streams.log_agent import LogAgent
from streams.lag import GroupLag
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
    logs: LogQueries
    lag: GroupLag
    token: Token


def get_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.weir
    return state
