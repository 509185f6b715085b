"""control/deployer.py against a real redis-server: what a deploy refuses, a pipeline's status
from heartbeats, the order of a hot swap, a failed redeploy undone, and undeploy.

Workers here are heartbeats in the registry, as a `weir worker` the server did not start
writes them (and as the server reads every worker's state): no process is started and no
broker is needed. Kafka is named at a closed port; the one call that reaches it (dropping a
retired deployment's topics) fails, is logged, and changes nothing these tests read. Deploys
that start workers run in tests/integration (test_pipeline_management, test_hot_swap).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from control.artifacts import ArtifactStore
from control.deployer import Deployer
from control.embedded import Service
from control.errors import DeploymentError, LimitError
from control.records import (
    Deployment,
    DeploymentConfig,
    ModelVersion,
    PipelineVersion,
    SidekickConfig,
)
from control.redeploys import Swap
from control.registry import Registry
from control.rollout import SWAP_POLL_S
from control.settings import Settings
from control.worker_ids import new_worker_id
from engine.definition import ModelStep, PipelineSpec
from streams.plan import WorkerRole
from streams.topics import TopicMap
from tests.control._heartbeats import beat

WS = "default"


@pytest.fixture
def registry(redis_service: Service) -> Registry:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    return registry


@pytest.fixture
def deploy_timeout_s() -> float:
    return 30.0


@pytest.fixture
async def deployer(
    registry: Registry, tmp_path: Path, deploy_timeout_s: float
) -> AsyncIterator[Deployer]:
    settings = Settings(
        home=tmp_path,
        kafka_bootstrap="127.0.0.1:1",
        http_host="10.1.2.3",
        max_pipelines=2,
        deploy_timeout_s=deploy_timeout_s,
    )
    deployer = Deployer(settings, registry, TopicMap.load(), ArtifactStore(settings.artifacts_dir))
    yield deployer
    await deployer.stop()


def version_of(pipeline: str, sha: str = "a" * 64, *, steps: int = 1) -> PipelineVersion:
    model = ModelVersion(
        name="m",
        version=str(uuid.uuid4()),
        sha=sha,
        runtime="onnx",
        workspace=WS,
        file_name="m.onnx",
        size=10,
    )
    spec = PipelineSpec(steps=[ModelStep(model=model.ref())] * steps)
    return PipelineVersion(
        workspace=WS, pipeline=pipeline, version=str(uuid.uuid4()), definition=spec
    )


def deployment_of(version: PipelineVersion, roles: list[WorkerRole]) -> Deployment:
    """A deployment of `version` whose workers have ids as the deployer gives them."""
    ids = [
        new_worker_id(version, role, roles[:i].count(role), suffix=f"w{i}")
        for i, role in enumerate(roles)
    ]
    return Deployment(
        workspace=WS, pipeline=version.pipeline, version=version.version, worker_ids=ids
    )


async def until(done: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    """Wait for `done()`; fail saying `what` was awaited if it stays false too long."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not done():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"still waiting for {what}")
        await asyncio.sleep(0.02)


# -- what a deploy refuses --------------------------------------------------------------


async def test_a_version_whose_model_file_is_missing_is_refused_and_not_recorded(
    deployer: Deployer, registry: Registry
) -> None:
    version = version_of("p", sha="f" * 64)
    with pytest.raises(
        DeploymentError,
        match=(
            rf"model file of m \(sha256 {'f' * 64}\) is missing from the artifact store; "
            "upload the model again"
        ),
    ):
        await deployer.deploy(version, DeploymentConfig())
    assert registry.get_deployment(WS, "p") is None
    assert deployer.status(WS, "p").model_dump() == {"status": "Pipeline p is not deployed"}


async def test_a_version_without_steps_is_refused(deployer: Deployer) -> None:
    with pytest.raises(DeploymentError, match="pipeline 'p' has no steps: add a model step first"):
        await deployer.deploy(version_of("p", steps=0), DeploymentConfig())


async def test_sidekick_settings_for_a_model_the_pipeline_does_not_run_are_refused(
    deployer: Deployer, registry: Registry
) -> None:
    sha = deployer.artifacts.put(b"model bytes")
    config = DeploymentConfig(sidekicks={"other": SidekickConfig()})
    with pytest.raises(
        DeploymentError,
        match=r"sidekick settings name \['other'\], which the "
        r"pipeline does not run \(its models: \['m'\]\)",
    ):
        await deployer.deploy(version_of("p", sha), config)
    assert registry.get_deployment(WS, "p") is None


async def test_the_pipeline_limit_counts_other_pipelines_not_a_redeploy(
    deployer: Deployer, registry: Registry
) -> None:
    for other in ("a", "b"):  # max_pipelines=2
        registry.set_deployment(deployment_of(version_of(other), ["main"]))
    with pytest.raises(LimitError, match="at most 2 pipelines may be deployed at once"):
        await deployer.deploy(version_of("p"), DeploymentConfig())
    # A redeploy of a deployed pipeline is not a new one: it gets past the limit (to the
    # missing model file here).
    with pytest.raises(DeploymentError, match="missing from the artifact store"):
        await deployer.deploy(version_of("a", sha="e" * 64), DeploymentConfig())


# -- status from heartbeats -------------------------------------------------------------


def test_status_is_built_from_the_heartbeats(deployer: Deployer, registry: Registry) -> None:
    deployment = deployment_of(version_of("p"), ["main", "main", "shadow"])
    registry.set_deployment(deployment)
    w0, w1, s0 = deployment.worker_ids
    assert deployer.status(WS, "p").status == "Starting"  # no heartbeat yet

    for worker_id in (w0, s0):
        beat(registry, deployment, worker_id, "Running")
    beat(registry, deployment, w1, "Starting", reason="installing requirements")
    status = deployer.status(WS, "p")
    assert (status.status, status.version) == ("Starting", deployment.version)
    assert status.starting_reasons(deployment.version) == {"installing requirements"}

    beat(registry, deployment, w1, "Running")
    body = deployer.status(WS, "p").model_dump()
    assert body["status"] == "Running" and body["details"] == []
    assert [e["name"] for e in body["engines"]] == [w0, w1, s0]
    assert [e["ip"] for e in body["engine_lbs"]] == ["10.1.2.3"]

    beat(registry, deployment, w1, "Running", age_s=60)  # its heartbeats stopped
    status = deployer.status(WS, "p")
    assert status.status == "Error"
    assert [e.reason for e in status.engines if e.name == w1] == ["no heartbeat for 60s"]


# -- waiting for a new version ----------------------------------------------------------


async def test_a_worker_that_cannot_start_fails_the_wait_with_its_reason(
    deployer: Deployer, registry: Registry
) -> None:
    deployment = deployment_of(version_of("p"), ["main", "main"])
    w0, w1 = deployment.worker_ids
    beat(registry, deployment, w0, "Running")
    beat(registry, deployment, w1, "Error", reason="model m failed to load: bad file")
    assert (
        await deployer._rollout.wait_running(deployment)
        == f"{w1}: model m failed to load: bad file"
    )


@pytest.mark.parametrize("deploy_timeout_s", [0.5])
async def test_a_version_not_running_in_time_fails_naming_the_workers_that_are_not(
    deployer: Deployer, registry: Registry
) -> None:
    deployment = deployment_of(version_of("p"), ["main", "main"])
    w0, w1 = deployment.worker_ids
    beat(registry, deployment, w0, "Running")
    beat(registry, deployment, w1, "Starting")
    failure = await deployer._rollout.wait_running(deployment)
    assert failure is not None
    assert failure.startswith("not Running within ") and failure.endswith(f"; {w1} Starting")


# -- hot swap ---------------------------------------------------------------------------


def start_swap(deployer: Deployer, registry: Registry) -> tuple[Swap, Deployment, Deployment]:
    """A redeploy of pipeline p as deploy() leaves it: v2 recorded, v1's worker serving."""
    old = deployment_of(version_of("p"), ["main"])
    new = deployment_of(version_of("p"), ["main", "main"])
    registry.set_deployment(new)
    beat(registry, old, old.worker_ids[0], "Running")
    swap = Swap(new, old, list(old.worker_ids))
    deployer._swaps[(WS, "p")] = swap
    swap.task = asyncio.create_task(deployer._swap(swap))
    return swap, old, new


async def test_a_hot_swap_stops_the_old_workers_only_once_every_new_one_runs(
    deployer: Deployer, registry: Registry
) -> None:
    swap, old, new = start_swap(deployer, registry)
    old_beat = beat(registry, old, old.worker_ids[0], "Running")
    n0, n1 = new.worker_ids
    beat(registry, new, n0, "Running")
    beat(registry, new, n1, "Starting")
    await asyncio.sleep(3 * SWAP_POLL_S)  # the swap reads the heartbeats each SWAP_POLL_S
    assert not registry.stop_requested(old_beat), "old worker stopped before the new ones ran"
    assert deployer.status(WS, "p").status == "Starting"

    beat(registry, new, n1, "Running")
    await until(lambda: registry.stop_requested(old_beat), "the old worker's stop request")
    status = deployer.status(WS, "p")  # the old worker may still take input
    assert (status.status, status.version) == ("Starting", new.version)
    assert status.details == [f"waiting for version {old.version} to stop taking input"]

    beat(registry, old, old.worker_ids[0], "Draining")
    await until(lambda: (WS, "p") not in deployer._swaps, "the end of the swap")
    assert deployer.status(WS, "p").status == "Running"
    beat(registry, old, old.worker_ids[0], "Stopped")
    await until(
        lambda: all(b.worker_id != old.worker_ids[0] for b in registry.workers(WS, "p")),
        "the old worker forgotten",
    )
    assert registry.get_deployment(WS, "p") == new


async def test_a_failed_redeploy_is_undone_and_reported_while_the_old_version_serves(
    deployer: Deployer, registry: Registry
) -> None:
    swap, old, new = start_swap(deployer, registry)
    old_beat = beat(registry, old, old.worker_ids[0], "Running")
    n0, n1 = new.worker_ids
    n0_beat = beat(registry, new, n0, "Running")
    beat(registry, new, n1, "Error", reason="model m failed to load")
    await until(lambda: (WS, "p") not in deployer._swaps, "the swap given up")

    assert registry.get_deployment(WS, "p") == old
    status = deployer.status(WS, "p")
    assert (status.status, status.version, status.failed_version) == (
        "Running",
        old.version,
        new.version,
    )
    assert status.details == [
        f"version {new.version} failed ({n1}: model m failed to load); "
        f"version {old.version} keeps serving"
    ]
    await until(lambda: registry.stop_requested(n0_beat), "the new worker's stop request")
    assert not registry.stop_requested(old_beat)
    beat(registry, new, n0, "Stopped")
    await deployer._retirement.wait()
    assert [b.worker_id for b in registry.workers(WS, "p")] == old.worker_ids  # new ones retired


# -- undeploy ---------------------------------------------------------------------------


async def stop_when_asked(registry: Registry, deployment: Deployment, seen: list[str]) -> None:
    """Act as the deployment's workers: each reports Stopped once asked to stop (in `seen`).
    Asked together, the last worker is seen first."""
    beats = {w: beat(registry, deployment, w, "Running") for w in deployment.worker_ids}
    while len(seen) < len(beats):
        for worker_id in reversed(deployment.worker_ids):
            if worker_id not in seen and registry.stop_requested(beats[worker_id]):
                seen.append(worker_id)
                beat(registry, deployment, worker_id, "Stopped")
        await asyncio.sleep(0.01)


async def test_undeploy_stops_main_workers_before_shadow_ones_and_forgets_the_deployment(
    deployer: Deployer, registry: Registry
) -> None:
    deployment = deployment_of(version_of("p"), ["main", "shadow"])
    registry.set_deployment(deployment)
    seen: list[str] = []
    workers = asyncio.create_task(stop_when_asked(registry, deployment, seen))
    await until(lambda: deployer.status(WS, "p").status == "Running", "the workers running")

    await deployer.undeploy(WS, "p")
    await workers
    assert seen == deployment.worker_ids  # main drained before its shadow workers were told
    assert registry.get_deployment(WS, "p") is None
    assert registry.workers(WS, "p") == []
    assert deployer.status(WS, "p").model_dump() == {"status": "Pipeline p is not deployed"}
    await deployer.undeploy(WS, "p")  # nothing deployed: nothing to do
