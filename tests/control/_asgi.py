"""The server's app in process, for route tests: a real Redis and log store, no broker.

The app's lifespan is not run: its services are built but not started (nothing here
talks to Kafka), and the log rows a test needs are written straight to the store, so
the log agent has nothing to wait for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from control.artifacts import ArtifactStore
from control.credentials import Token
from control.deployer import Deployer
from control.embedded import Service
from control.gateway import Gateway
from control.log_queries import LogQueries
from control.registry import DEFAULT_WORKSPACE, Registry
from control.server.app import create_app
from control.server.state import ServerState
from control.settings import Settings
from streams.log_agent import LogAgent
from streams.lag import GroupLag
from streams.logstore import LogStore
from streams.topics import TopicMap

TOKEN = "test-token"


@dataclass
class InProcess:
    http: httpx.AsyncClient
    state: ServerState
    app: FastAPI


async def _nothing_to_sync(workspace: str, pipeline: str) -> bool:
    return True


async def in_process(redis: Service, home: Path, **fields: Any) -> AsyncIterator[InProcess]:
    """`fields`: more Settings (e.g. max_payload_bytes=...)."""
    settings = Settings(
        home=home,
        kafka_bootstrap="127.0.0.1:1",
        redis_url=redis.address,
        token=TOKEN,
        http_host="10.1.2.3",
        **fields,
    )
    registry = Registry(redis.address)
    registry.redis.flushdb()
    registry.ensure_workspace(DEFAULT_WORKSPACE)
    topics, artifacts = TopicMap.load(), ArtifactStore(settings.artifacts_dir)
    store = LogStore(settings.logs_dir)
    worker = settings.worker_settings()
    state = ServerState(
        settings=settings,
        registry=registry,
        artifacts=artifacts,
        topics=topics,
        deployer=Deployer(settings, registry, topics, artifacts),
        gateway=Gateway(settings, registry, topics, worker),
        log_store=store,
        log_agent=LogAgent(worker, topics, store),
        logs=LogQueries(registry, store, _nothing_to_sync),
        lag=GroupLag(worker),
        token=Token.install(home, TOKEN),
    )
    app = create_app(settings)
    app.state.weir = state
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://weir",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as http:
            yield InProcess(http, state, app)
    finally:
        await state.lag.stop()  # its clients were made, never started
        state.logs.close()
