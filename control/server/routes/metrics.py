"""`GET /metrics`: Prometheus text exposition of the server and its workers."""

from __future__ import annotations

import time
from collections import Counter

from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from control.server.state import get_state

router = APIRouter()

_REQUESTS: Counter[tuple[str, int]] = Counter()
_SECONDS: Counter[str] = Counter()


class CountRequests:
    """HTTP middleware: requests and time spent, by route template and status.

    A plain ASGI middleware: Starlette's `BaseHTTPMiddleware` (`app.middleware("http")`)
    runs every request's app in a task group of its own with memory streams between them,
    one more layer for every inference, and for every refusal under load.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            _REQUESTS[(path, status)] += 1
            _SECONDS[path] += time.perf_counter() - started


def _labels(**values: object) -> str:
    inner = ",".join(f'{k}="{str(v).replace(chr(34), chr(39))}"' for k, v in values.items())
    return "{" + inner + "}"


@router.get("/metrics")
def metrics(request: Request) -> Response:
    state = get_state(request)
    lines = ["# TYPE weir_http_requests_total counter"]
    lines += [f"weir_http_requests_total{_labels(path=p, status=s)} {n}"
              for (p, s), n in sorted(_REQUESTS.items())]
    lines.append("# TYPE weir_http_request_seconds_total counter")
    lines += [f"weir_http_request_seconds_total{_labels(path=p)} {v:.6f}"
              for p, v in sorted(_SECONDS.items())]
    lines += ["# TYPE weir_deployed_pipelines gauge",
              f"weir_deployed_pipelines {len(state.registry.list_deployments())}",
              "# TYPE weir_worker_rows_processed_total counter",
              "# TYPE weir_worker_rows_failed_total counter",
              "# TYPE weir_worker_running gauge"]
    for deployment in state.registry.list_deployments():
        for worker in state.registry.workers(deployment.workspace, deployment.pipeline):
            labels = _labels(workspace=worker.workspace, pipeline=worker.pipeline,
                             version=worker.version, worker=worker.worker_id)
            lines += [f"weir_worker_rows_processed_total{labels} {worker.processed}",
                      f"weir_worker_rows_failed_total{labels} {worker.failed}",
                      f"weir_worker_running{labels} {int(worker.status == 'Running')}"]
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
