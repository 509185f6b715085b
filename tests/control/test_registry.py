"""control/registry.py against a real redis-server."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis
from aiokafka import TopicPartition

from control.embedded import Service, free_port, start_redis
from control.errors import EntityNotFoundError, RegistryUnavailable
from control.records import Deployment, DeploymentConfig, ModelVersion
from control.redis_client import REDIS_PROBE_S
from control.registry import Registry
from engine.definition import ModelStep, PipelineSpec
from streams.log_policy import LogPolicy
from streams.status import WorkerStatus


@pytest.fixture
def registry(redis_service: Service) -> Registry:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    return registry


def _model(name: str = "m", sha: str = "a" * 64) -> ModelVersion:
    return ModelVersion(
        name=name,
        version=str(uuid.uuid4()),
        sha=sha,
        runtime="onnx",
        workspace="default",
        file_name="m.onnx",
        size=10,
    )


def test_each_upload_is_a_new_version_and_latest_wins(registry: Registry) -> None:
    first, second = registry.add_model(_model()), registry.add_model(_model(sha="b" * 64))
    assert registry.get_model("default", "m").version == second.version
    assert registry.get_model("default", "m", first.version).sha == "a" * 64
    assert [m.version for m in registry.model_versions("default", "m")] == [
        first.version,
        second.version,
    ]
    assert [m.name for m in registry.list_models("default")] == ["m"]


def test_unknown_model_says_to_upload(registry: Registry) -> None:
    with pytest.raises(EntityNotFoundError, match="model 'nope' not found: upload it first"):
        registry.get_model("default", "nope")


def test_build_pipeline_returns_the_existing_one(registry: Registry) -> None:
    created = registry.get_or_create_pipeline("default", "p")
    again = registry.get_or_create_pipeline("default", "p")
    assert again.created == created.created
    assert [p.name for p in registry.list_pipelines("default")] == ["p"]


def test_versions_newest_first_and_unchanged_steps_reuse_the_version(registry: Registry) -> None:
    registry.get_or_create_pipeline("default", "p")
    a = PipelineSpec(steps=[ModelStep(model=registry.add_model(_model("a")).ref())])
    b = PipelineSpec(steps=[ModelStep(model=registry.add_model(_model("b")).ref())])
    v1 = registry.add_version("default", "p", a)
    assert registry.add_version("default", "p", a).version == v1.version
    v2 = registry.add_version("default", "p", b)
    assert [v.version for v in registry.versions("default", "p")] == [v2.version, v1.version]
    assert registry.get_version("default", "p").version == v2.version
    assert registry.get_version("default", "p", v1.version).definition == a


def test_a_pipelines_log_policy_is_its_deployments(registry: Registry) -> None:
    assert registry.log_policy("default", "p") == LogPolicy()  # not deployed: the default
    policy = LogPolicy(max_row_bytes=1000, exclude=["png"])
    registry.set_deployment(
        Deployment(
            workspace="default",
            pipeline="p",
            version="v",
            config=DeploymentConfig(log_policy=policy),
        )
    )
    assert registry.log_policy("default", "p") == policy
    assert registry.log_policy("default", "other") == LogPolicy()


def test_deployments_are_listed_and_removed(registry: Registry) -> None:
    registry.set_deployment(Deployment(workspace="default", pipeline="p", version="v"))
    assert [d.pipeline for d in registry.list_deployments()] == ["p"]
    registry.delete_deployment("default", "p")
    assert registry.get_deployment("default", "p") is None
    assert registry.list_deployments() == []


def _status(age_s: float, state: str = "Running") -> WorkerStatus:
    return WorkerStatus(
        worker_id="w1",
        workspace="default",
        pipeline="p",
        version="v",
        replica=0,
        pid=1,
        host="h",
        status=state,  # type: ignore[arg-type]
        time=datetime.now(UTC) - timedelta(seconds=age_s),
    )


def test_a_stale_heartbeat_is_not_running(registry: Registry) -> None:
    registry.beat(_status(0))
    assert registry.workers("default", "p")[0].status == "Running"
    registry.beat(_status(30))
    stale = registry.workers("default", "p")[0]
    assert stale.status == "Error" and "no heartbeat" in (stale.reason or "")


def test_a_draining_worker_gone_silent_is_not_taken_for_draining(registry: Registry) -> None:
    """A draining worker beats on: one silent for long died or hangs (its deployment's topics
    would otherwise never be dropped, control/retirement.py)."""
    registry.beat(_status(0, "Draining"))
    assert registry.workers("default", "p")[0].status == "Draining"
    registry.beat(_status(30, "Draining"))
    assert registry.workers("default", "p")[0].status == "Error"
    registry.beat(_status(600, "Stopped"))  # a stopped worker is silent by right
    assert registry.workers("default", "p")[0].status == "Stopped"


def test_stop_requests_reach_the_named_worker_only(registry: Registry) -> None:
    registry.request_stop("default", "p", ["w1"])
    assert registry.stop_requested(_status(0))
    assert not registry.stop_requested(_status(0).model_copy(update={"worker_id": "w2"}))
    registry.forget_workers("default", "p", ["w1"])
    assert not registry.stop_requested(_status(0))


def test_registry_survives_a_new_connection(registry: Registry, redis_service: Service) -> None:
    registry.add_model(_model())
    assert Registry(redis_service.address).get_model("default", "m").name == "m"


def test_partition_claims_tell_a_new_reader_which_partitions_were_never_released(
    registry: Registry,
) -> None:
    a, b = TopicPartition("weir.ws.p.in", 0), TopicPartition("weir.ws.p.in", 1)
    assert registry.claim_partitions("g", "w1", {a, b}) == set()  # nobody read them before
    registry.release_partitions("g", "w1", {a})  # w1 left `a` cleanly, then died holding `b`
    assert registry.claim_partitions("g", "w2", {a, b}) == {b}
    registry.release_partitions("g", "w1", {b})  # a late release by w1 leaves w2's claim
    assert registry.claim_partitions("g", "w3", {b}) == {b}
    assert registry.claim_partitions("other-group", "w1", {a, b}) == set()


def test_redis_away_is_registry_unavailable_named_without_its_password() -> None:
    registry = Registry(f"redis://:secret@127.0.0.1:{free_port()}/0")
    with pytest.raises(
        RegistryUnavailable,
        match=r"Redis at redis://:\*\*\*@127\.0\.0\.1:\d+/0 "
        r"is unreachable .*`weir up`",
    ) as caught:
        registry.list_pipelines("default")
    assert "secret" not in str(caught.value)
    with pytest.raises(RegistryUnavailable):
        registry.claim_partitions("g", "o", {TopicPartition("t", 0)})


def test_a_redis_that_does_not_answer_is_not_waited_for_again() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        registry = Registry(f"redis://127.0.0.1:{silent.getsockname()[1]}/0")
        with pytest.raises(RegistryUnavailable, match="Timeout") as first:
            registry.get_deployment("default", "p")
        assert isinstance(first.value.__cause__, redis.TimeoutError)  # it did wait, once
        with pytest.raises(RegistryUnavailable, match="Timeout") as second:
            registry.workers("default", "p")
        assert second.value.__cause__ is None  # refused at once: Redis is known to be away


def test_the_same_registry_works_again_once_redis_is_back(tmp_path: Path) -> None:
    redis_server = start_redis(tmp_path)
    try:
        registry = Registry(redis_server.address)
        registry.get_or_create_pipeline("default", "p")
        redis_server.stop()
        with pytest.raises(RegistryUnavailable):
            registry.get_pipeline("default", "p")
        redis_server = start_redis(tmp_path, port=redis_server.port)
        pipeline = None
        for _ in range(100):  # its pings find it back within REDIS_PROBE_S
            try:
                pipeline = registry.get_pipeline("default", "p")
                break
            except RegistryUnavailable:
                time.sleep(REDIS_PROBE_S / 5)
        assert pipeline is not None and pipeline.name == "p"  # kept in its append-only file
    finally:
        redis_server.stop()
