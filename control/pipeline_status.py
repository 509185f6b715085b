"""A pipeline's status, in the guide's shape: one model from the deployer through the
route to the SDK and the CLI, and the pure function that builds it from heartbeats.

A pipeline that is not deployed has only `status` ("Pipeline NAME is not deployed");
a deployed one also names its `version` (and, after a failed redeploy, the
`failed_version` it left behind), besides the guide's details, engines, engine_lbs
and sidekicks.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from streams.status import ModelStatus, WorkerState, WorkerStatus

GATEWAY_NAME = "weir-gateway"


class PipelineState(BaseModel):
    id: str
    status: WorkerState


class PipelineStatuses(BaseModel):
    pipelines: list[PipelineState]


class ModelStatuses(BaseModel):
    models: list[ModelStatus]


class Engine(BaseModel):
    """One worker, as the guide's `engines` and `sidekicks` list it (plus weir's own fields)."""

    ip: str
    name: str
    role: str
    status: WorkerState
    reason: str | None = None
    restarting: bool = False
    """In Error because its process exited, and being started again (not a failure yet)."""
    details: list[str] = []
    version: str
    pid: int
    processed: int = 0
    failed: int = 0
    remote: bool = False
    """Not started by this server (`weir worker` on another host)."""
    pipeline_statuses: PipelineStatuses
    model_statuses: ModelStatuses


class EngineLb(BaseModel):
    """The HTTP gateway, as the guide's `engine_lbs` lists it."""

    ip: str
    name: str = GATEWAY_NAME
    status: str = "Running"
    reason: str | None = None
    details: list[str] = []


class PipelineStatus(BaseModel):
    """`pipeline.status()`; `deployed` tells the two shapes apart."""

    status: str
    version: str | None = None
    failed_version: str | None = None
    details: list[str] = []
    engines: list[Engine] = []
    engine_lbs: list[EngineLb] = []
    sidekicks: list[Engine] = []

    @property
    def deployed(self) -> bool:
        return self.version is not None

    def runs(self, version: str) -> bool:
        """`version` runs (and is not the version a failed redeploy left behind)."""
        return (
            self.status == "Running" and self.version == version and self.failed_version != version
        )

    def failed(self, version: str, *, redeploy: bool) -> bool:
        """`version` certainly failed: a redeploy once the server has undone it (until then
        the new version may briefly show Error), a first deploy once one of its workers is in
        Error for good (one whose process exited and is being restarted may yet run: e.g. a
        worker that gave up on a consumer group that never settled starts over)."""
        return self.failed_version == version or (
            not redeploy
            and self.version == version
            and any(
                e.status == "Error" and not e.restarting
                for e in [*self.engines, *self.sidekicks]
                if e.version == version and not e.remote  # remote ones do not count
            )
        )

    def starting_reasons(self, version: str) -> set[str]:
        """What `version`'s starting workers say they are doing (e.g. installing a step's
        requirements): deploy() shows them, and waits on while they change."""
        return {
            e.reason
            for e in self.engines
            if e.version == version and e.status == "Starting" and e.reason
        }

    def reasons(self) -> list[str]:
        """The details, then every worker's reason."""
        return [*self.details, *(e.reason for e in [*self.engines, *self.sidekicks] if e.reason)]

    @model_serializer(mode="wrap")
    def _guide_shape(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        body: dict[str, Any] = handler(self)
        if not self.deployed:
            return {"status": self.status}
        if self.failed_version is None:
            del body["failed_version"]
        return body


def not_deployed(name: str) -> PipelineStatus:
    return PipelineStatus(status=f"Pipeline {name} is not deployed")


def overall(expected: int, workers: list[WorkerStatus]) -> WorkerState:
    """A deployment's state from its `expected` workers' statuses (one reading of them, so
    the state and the engines always agree)."""
    if any(w.status == "Error" for w in workers):
        return "Error"
    running = [w for w in workers if w.status == "Running"]
    return "Running" if len(running) == expected else "Starting"


def pipeline_status(
    name: str,
    version: str,
    *,
    expected: int,
    workers: list[WorkerStatus],
    remote: list[WorkerStatus],
    gateway_ip: str,
    handing_over_from: str | None = None,
    failed: tuple[str, str] | None = None,
) -> PipelineStatus:
    """The status of pipeline `name` deployed at `version` from its workers' statuses.

    `expected` counts the deployment's own workers; `remote` ones (not started by this
    server) are listed but not counted. `handing_over_from` is the version a hot swap
    waits on to stop taking input; `failed` the (version, reason) of a redeploy that
    failed, while `version` keeps serving.
    """
    state, details = overall(expected, workers), []
    if state == "Running" and handing_over_from is not None:
        state = "Starting"
        details = [f"waiting for version {handing_over_from} to stop taking input"]
    if failed is not None:
        details = [f"version {failed[0]} failed ({failed[1]}); version {version} keeps serving"]
    details += [
        f"worker {w.worker_id} on {w.host} (not started by this server) is "
        f"{w.status}: {w.reason or 'see its log'}"
        for w in remote
        if w.version == version and w.status != "Running"
    ]
    remote_ids = {w.worker_id for w in remote}
    engines = [
        Engine(
            ip=w.host,
            name=w.worker_id,
            role=w.role,
            status=w.status,
            reason=w.reason,
            restarting=w.restarting,
            version=w.version,
            pid=w.pid,
            processed=w.processed,
            failed=w.failed,
            remote=w.worker_id in remote_ids,
            pipeline_statuses=PipelineStatuses(pipelines=[PipelineState(id=name, status=w.status)]),
            model_statuses=ModelStatuses(models=w.models),
        )
        for w in [*workers, *remote]
    ]
    return PipelineStatus(
        status=state,
        version=version,
        failed_version=failed[0] if failed else None,
        details=details,
        engines=[e for e in engines if e.role != "sidekick"],
        engine_lbs=[EngineLb(ip=gateway_ip)],
        sidekicks=[e for e in engines if e.role == "sidekick"],
    )
