"""`GET /metrics`: Prometheus text exposition of the server, its workers and its pipelines.

It needs the bearer token like every route but the health checks (Prometheus sends one:
`authorization: {credentials_file: ...}` in its scrape config; monitoring/prometheus.yml).
What it exposes is listed in control/server/exposition.py; HTTP requests are counted here,
by route template, status and pipeline (the `{name}` of the route, "" for other routes).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control.pipeline_lag import pipeline_lag
from control.records import Deployment, PipelineVersion
from control.server.exposition import PipelineFacts, StoreUsage, WeirCollector, buckets
from control.server.state import ServerState, get_state
from streams.metrics import Histogram, latency_histogram
from streams.shadow_logs import SHADOW_INFIX

log = logging.getLogger(__name__)

router = APIRouter()


class HttpMetrics:
    """Requests the server answered, and how long they took, by route and pipeline."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, str, int]] = Counter()
        self.seconds: dict[tuple[str, str], Histogram] = {}

    def middleware(self, app: ASGIApp) -> ASGIApp:
        """A plain ASGI middleware that counts every request (refusals too). Not Starlette's
        `BaseHTTPMiddleware`: that runs each request's app in a task group of its own with
        memory streams between them, one more layer for every inference."""

        async def counted(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started, status = time.perf_counter(), 500

            async def sending(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, sending)
            finally:
                self.observe(scope, status, time.perf_counter() - started)

        return counted

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        path = getattr(scope.get("route"), "path", "unmatched")
        pipeline = str(scope.get("path_params", {}).get("name", ""))
        self.requests[(scope.get("method", ""), path, pipeline, status)] += 1
        key = (path, pipeline)
        if key not in self.seconds:
            self.seconds[key] = latency_histogram()
        self.seconds[key].observe(seconds)

    def families(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "weir_http_requests",
            "HTTP requests answered",
            labels=["method", "path", "pipeline", "status"],
        )
        for (method, path, pipeline, status), n in sorted(self.requests.items()):
            requests.add_metric([method, path, pipeline, str(status)], n)
        seconds = HistogramMetricFamily(
            "weir_http_request_seconds",
            "Time to answer an HTTP request",
            labels=["path", "pipeline"],
        )
        for (path, pipeline), histogram in sorted(self.seconds.items()):
            seconds.add_metric([path, pipeline], buckets(histogram), histogram.sum)
        yield from (requests, seconds)


async def _pipeline_facts(state: ServerState) -> list[PipelineFacts]:
    deployed = await asyncio.to_thread(_deployed, state)
    for facts, deployment, version in deployed:
        if version is None:
            continue
        try:
            facts.lag = await pipeline_lag(state.lag, state.topics, deployment, version)
        except Exception as exc:  # a busy or restarting broker: the other series still count
            log.warning(
                "could not read the consumer lag of %s/%s: %s", facts.workspace, facts.pipeline, exc
            )
    return [facts for facts, _, _ in deployed]


def _deployed(state: ServerState) -> list[tuple[PipelineFacts, Deployment, PipelineVersion | None]]:
    """Each deployed pipeline's facts and version (None where it cannot be read), from the
    registry: called in a thread, so a Redis that does not answer holds this scrape only."""
    deployed = []
    for deployment in state.registry.list_deployments():
        ws, name = deployment.workspace, deployment.pipeline
        facts = PipelineFacts(
            ws, name, state.registry.workers(ws, name), restarts=state.deployer.restarts(ws, name)
        )
        version: PipelineVersion | None = None
        try:
            version = state.registry.get_version(ws, name, deployment.version)
        except Exception as exc:  # deleted meanwhile, or Redis went away: no lag series
            log.warning("could not read version %s of %s/%s: %s", deployment.version, ws, name, exc)
        deployed.append((facts, deployment, version))
    return deployed


def _store_usage(state: ServerState) -> list[StoreUsage]:
    usage = []
    for ws, stored in state.log_store.pipelines():
        pipeline, _, challenger = stored.partition(SHADOW_INFIX)
        rows, size = state.log_store.usage(ws, stored)
        usage.append(StoreUsage(ws, pipeline, challenger, rows, size))
    return usage


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus text format (version 0.0.4)."""
    state = get_state(request)
    http: HttpMetrics = request.app.state.http_metrics
    registry = CollectorRegistry(auto_describe=False)
    registry.register(
        WeirCollector(
            await _pipeline_facts(state),
            await asyncio.to_thread(_store_usage, state),
            http.families(),
        )
    )
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
