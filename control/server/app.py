"""The weir HTTP server: routes, token check, and the lifespan that starts the services."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.routing import Route

from control.artifacts import ArtifactStore
from control.credentials import Token, check_private
from control.deployer import Deployer
from control.gateway import Gateway
from control.log_queries import LogQueries
from control.registry import DEFAULT_WORKSPACE, Registry
from control.server.auth import RequireToken
from control.server.body_limit import BodyLimit
from control.server.errors import (
    http_error_handler,
    invalid_request_handler,
    weir_error_handler,
)
from control.server.routes import (
    bundles,
    console,
    health,
    inference,
    logs,
    metrics,
    models,
    oip,
    pipelines,
    workspaces,
)
from control.server.state import ServerState
from control.settings import Settings, use_temp_under_home
from control.trust import check_definition
from engine.errors import WeirError
from streams.admin import resolved
from streams.log_agent import LogAgent
from streams.gc_tuning import tune_gc
from streams.lag import GroupLag
from streams.logstore import LogStore
from streams.topics import TopicMap

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app; services start in its lifespan."""
    if not (settings.kafka_bootstrap and settings.redis_url and settings.token):
        raise ValueError("the server needs kafka_bootstrap, redis_url and token (run `weir up`)")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_private(settings.stack_file)
        token = Token.install(settings.home, settings.token or "")
        registry = Registry(settings.redis_url or "")
        registry.ensure_workspace(DEFAULT_WORKSPACE)
        topics = TopicMap.load()
        artifacts = ArtifactStore(settings.artifacts_dir)
        retention = (
            timedelta(hours=settings.log_retention_hours) if settings.log_retention_hours else None
        )
        store = LogStore(settings.logs_dir, retention=retention, max_bytes=settings.log_max_bytes)
        worker = await resolved(settings.worker_settings())  # the broker's fetch waits
        log_agent = LogAgent(worker, topics, store, policies=registry.log_policy)
        state = ServerState(
            settings=settings,
            registry=registry,
            artifacts=artifacts,
            topics=topics,
            deployer=Deployer(
                settings, registry, topics, artifacts, topics_made=log_agent.look_for_new_topics
            ),
            gateway=Gateway(settings, registry, topics, worker),
            log_store=store,
            log_agent=log_agent,
            logs=LogQueries(registry, store, log_agent.sync),
            lag=GroupLag(worker),
            token=token,
        )
        app.state.weir = state
        await state.gateway.start()
        await state.log_agent.start()
        await state.deployer.start()
        await state.lag.start()
        await _resume(state)
        compactor = asyncio.create_task(_compact_forever(store, settings.log_compact_every_s))
        try:
            yield
        finally:
            compactor.cancel()
            await asyncio.gather(compactor, return_exceptions=True)
            await state.lag.stop()
            await state.deployer.stop()
            await state.log_agent.stop()
            await state.gateway.stop()
            state.logs.close()

    # No /docs or /redoc: their pages load scripts from a public CDN, blank offline. The
    # schema stays at /openapi.json; the README lists the routes. No redirects of a path with a
    # trailing slash: a model named "./" (quoted into the path) got a 307 to another route.
    app = FastAPI(
        title="weir", lifespan=lifespan, docs_url=None, redoc_url=None, redirect_slashes=False
    )
    app.add_exception_handler(WeirError, weir_error_handler)
    app.add_exception_handler(RequestValidationError, invalid_request_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.include_router(health.router)
    app.include_router(console.page)
    app.mount("/static", StaticFiles(directory=console.STATIC_DIR), name="static")
    # Inference first: routes are tried in order, and inference is most of the traffic (its
    # requests cost 0.05 ms of CPU less each than at the end of the list, bench/README.md).
    for module in (inference, oip, workspaces, models, pipelines, bundles, logs, metrics, console):
        app.include_router(module.router)
    # The last added runs first: the counting (refusals too), the token check, the body limit,
    # then inference's own lane past FastAPI (routes.inference).
    app.add_middleware(inference.InferenceLane)
    uploads = [
        (method, route.path_regex)
        for route in (*models.router.routes, *bundles.router.routes)
        if isinstance(route, Route)
        and route.endpoint in (models.upload_model, bundles.import_bundle)
        for method in route.methods or ()
    ]
    app.add_middleware(
        BodyLimit,
        limit=settings.max_payload_bytes,
        upload_limit=settings.max_upload_bytes,
        uploads=uploads,
    )
    app.add_middleware(RequireToken)
    app.state.http_metrics = metrics.HttpMetrics()
    app.add_middleware(app.state.http_metrics.middleware)
    return app


async def _resume(state: ServerState) -> None:
    """After a server restart, take back the recorded deployments' workers (or start them
    again), and stop the workers no deployment wants any more. A deployment that cannot
    resume (a policy refuses it now, its model files are gone) is logged and dropped; the
    server starts all the same."""
    for deployment in state.registry.list_deployments():
        ws, name = deployment.workspace, deployment.pipeline
        try:
            version = state.registry.get_version(ws, name, deployment.version)
            check_definition(state.settings, version.definition)
            await state.deployer.resume(deployment, version)
        except WeirError as exc:
            log.error("not resuming %s/%s: %s", ws, name, exc)
            state.registry.delete_deployment(ws, name)
            state.registry.forget_workers(ws, name, deployment.worker_ids)
    await state.deployer.retire_strays()


async def _compact_forever(store: LogStore, every_s: float) -> None:
    """Merge small log files, drop duplicates and apply retention, in the background."""
    while True:
        await asyncio.sleep(every_s)
        for workspace, pipeline in store.pipelines():
            try:
                await asyncio.to_thread(store.compact, workspace, pipeline)
            except Exception:  # one pipeline's trouble must not stop the others' compaction
                log.exception("compacting the logs of %s/%s failed", workspace, pipeline)


def serve(settings: Settings) -> None:
    """Run the server in this process until SIGINT/SIGTERM."""
    import uvicorn

    from control.server.quiet_uvicorn import QuietServer

    use_temp_under_home(settings)
    # With a time on each line, as the workers' logs have (run/server.log is read beside them).
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    app = create_app(settings)
    tune_gc()
    config = uvicorn.Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )
    QuietServer(config).run()
