"""control/pipeline_status.py and deployment_status.local_view: a pipeline's status is a pure
function of its workers' heartbeats (and, for local workers, their processes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from control.deployment_status import local_view
from control.local_workers import LocalWorker
from control.pipeline_status import PipelineStatus, not_deployed, pipeline_status
from control.records import Deployment
from streams.plan import WorkerRole
from streams.status import ModelStatus, WorkerState, WorkerStatus
from streams.worker import EXIT_CANNOT_START, EXIT_OVER_MEMORY

MODEL = ModelStatus(name="ccfraud", version="v-model", sha="abc", status="Running")


def beat(
    worker_id: str,
    status: WorkerState = "Running",
    *,
    version: str = "v1",
    role: WorkerRole = "main",
    reason: str | None = None,
    pid: int = 100,
    host: str = "10.0.0.5",
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=worker_id,
        workspace="default",
        pipeline="p",
        version=version,
        replica=0,
        role=role,
        pid=pid,
        host=host,
        status=status,
        reason=reason,
        models=[MODEL],
        time=datetime.now(UTC),
    )


def status_of(
    workers: list[WorkerStatus],
    *,
    expected: int | None = None,
    remote: list[WorkerStatus] | None = None,
    **kw: object,
) -> PipelineStatus:
    return pipeline_status(
        "p",
        "v1",
        expected=len(workers) if expected is None else expected,
        workers=workers,
        remote=remote or [],
        gateway_ip="127.0.0.1",
        **kw,
    )


def test_a_pipeline_not_deployed_has_only_its_status() -> None:
    status = not_deployed("imdb-pipeline")
    assert status.model_dump() == {"status": "Pipeline imdb-pipeline is not deployed"}
    assert not status.deployed
    assert PipelineStatus.model_validate(status.model_dump()) == status


def test_a_running_pipeline_has_the_guides_shape() -> None:
    body = status_of([beat("w0")]).model_dump()
    assert set(body) == {"status", "version", "details", "engines", "engine_lbs", "sidekicks"}
    assert body["status"] == "Running" and body["details"] == [] and body["sidekicks"] == []
    engine = body["engines"][0]
    assert {k: engine[k] for k in ("ip", "name", "status", "reason")} == {
        "ip": "10.0.0.5",
        "name": "w0",
        "status": "Running",
        "reason": None,
    }
    assert engine["pipeline_statuses"] == {"pipelines": [{"id": "p", "status": "Running"}]}
    assert engine["model_statuses"] == {
        "models": [{"name": "ccfraud", "version": "v-model", "sha": "abc", "status": "Running"}]
    }
    assert body["engine_lbs"] == [
        {
            "ip": "127.0.0.1",
            "name": "weir-gateway",
            "status": "Running",
            "reason": None,
            "details": [],
        }
    ]
    assert PipelineStatus.model_validate(body).model_dump() == body  # the SDK reads it back


@pytest.mark.parametrize(
    ("states", "expected", "overall"),
    [
        (["Running", "Running"], 2, "Running"),
        (["Running"], 2, "Starting"),  # a worker has not reported yet
        (["Running", "Starting"], 2, "Starting"),
        (["Running", "Error"], 2, "Error"),
        (["Starting", "Error"], 2, "Error"),
    ],
)
def test_the_state_comes_from_every_worker(
    states: list[WorkerState], expected: int, overall: str
) -> None:
    workers = [beat(f"w{i}", s) for i, s in enumerate(states)]
    assert status_of(workers, expected=expected).status == overall


def test_a_hot_swap_is_starting_until_the_old_version_stops_taking_input() -> None:
    status = status_of([beat("w0")], handing_over_from="v0")
    assert status.status == "Starting"
    assert status.details == ["waiting for version v0 to stop taking input"]
    assert not status.runs("v1")


def test_a_failed_redeploy_names_the_failed_version_while_the_old_one_serves() -> None:
    status = status_of([beat("w0")], failed=("v2", "not Running within 30s"))
    body = status.model_dump()
    assert body["failed_version"] == "v2" and body["status"] == "Running"
    assert body["details"] == [
        "version v2 failed (not Running within 30s); version v1 keeps serving"
    ]
    assert status.failed("v2", redeploy=True) and status.runs("v1") and not status.runs("v2")
    assert "failed_version" not in status_of([beat("w0")]).model_dump()


def test_remote_workers_are_listed_but_not_counted() -> None:
    dead = beat("far", "Error", reason="killed", host="10.0.0.9")
    status = status_of([beat("w0")], remote=[dead])
    assert status.status == "Running"
    assert [(e.name, e.remote) for e in status.engines] == [("w0", False), ("far", True)]
    assert status.details == [
        "worker far on 10.0.0.9 (not started by this server) is Error: killed"
    ]
    assert status.reasons() == [*status.details, "killed"]
    assert not status.failed("v1", redeploy=False)  # nor do they fail a first deploy


def test_sidekick_workers_are_listed_apart() -> None:
    status = status_of([beat("w0"), beat("w0-sidekick", role="sidekick")])
    assert [e.name for e in status.engines] == ["w0"]
    assert [e.name for e in status.sidekicks] == ["w0-sidekick"]


def test_a_first_deploy_has_failed_once_a_worker_of_its_version_is_in_error_for_good() -> None:
    status = status_of([beat("w0", "Error", reason="cannot load")])
    assert status.failed("v1", redeploy=False)
    assert not status.failed("v1", redeploy=True)  # the server undoes a redeploy first


@pytest.mark.parametrize(("code", "failed"), [(1, False), (EXIT_CANNOT_START, True)])
def test_a_first_deploy_whose_worker_exited_has_failed_only_if_it_is_not_restarted(
    code: int, failed: bool
) -> None:
    shown = local_view(DEPLOYMENT, local(), beat("w0"), code, 0.0)
    status = status_of([shown])
    assert (status.status, status.engines[0].restarting) == ("Error", not failed)
    assert status.failed("v1", redeploy=False) is failed


def test_deploy_shows_what_the_new_versions_starting_workers_say() -> None:
    status = status_of(
        [
            beat("a", "Starting", reason="step 'pre': Collecting Pillow"),
            beat("b"),
            beat("c", "Starting", version="v0", reason="restarting"),
        ]
    )
    assert status.starting_reasons("v1") == {"step 'pre': Collecting Pillow"}


# -- local workers: heartbeat and process together --------------------------------------


@dataclass
class ExitedOrRunning:
    """The part of a worker process that local_view reads."""

    pid: int


DEPLOYMENT = Deployment(workspace="default", pipeline="p", version="v1", worker_ids=["w0"])


def local(pid: int = 100, **kw: object) -> LocalWorker:
    return LocalWorker(
        worker_id="w0",
        workspace="default",
        pipeline="p",
        version="v1",
        deployment=DEPLOYMENT.id,
        args=[],
        env={},
        proc=ExitedOrRunning(pid),
        **kw,
    )  # type: ignore[arg-type]


def test_a_running_process_shows_its_heartbeat() -> None:
    running = beat("w0")
    assert local_view(DEPLOYMENT, local(), running, None, 0.0) == running


def test_a_process_without_a_heartbeat_of_its_own_is_starting() -> None:
    old = beat("w0", pid=99)  # the heartbeat of the process before a restart
    shown = local_view(
        DEPLOYMENT, local(restarts=1, last_exit=1, last_reason="boom"), old, None, 0.0
    )
    assert (shown.status, shown.pid) == ("Starting", 100)
    assert shown.reason == "restarted after exit code 1: boom"


@pytest.mark.parametrize(
    ("code", "said", "reason"),
    [
        (1, None, "process exited with 1; restarting"),
        (EXIT_CANNOT_START, None, f"process exited with {EXIT_CANNOT_START}; it cannot start"),
        (EXIT_CANNOT_START, "no such model", "no such model"),
        (
            EXIT_OVER_MEMORY,
            "memory limit exceeded: 1.2 GiB",
            "memory limit exceeded: 1.2 GiB; restarting",
        ),
    ],
)
def test_an_exited_process_is_an_error_with_its_reason(
    code: int, said: str | None, reason: str
) -> None:
    last = beat("w0", "Error" if said else "Running", reason=said)
    shown = local_view(DEPLOYMENT, local(), last, code, 0.0)
    assert (shown.status, shown.reason) == ("Error", reason)


def test_a_worker_that_keeps_dying_says_when_it_restarts() -> None:
    shown = local_view(DEPLOYMENT, local(quick_deaths=3, restart_at=50.0), None, 1, 20.0)
    assert shown.reason == (
        "process exited with 1; restarting in 30s (it died 3 times in a row "
        "soon after starting; see its log)"
    )
