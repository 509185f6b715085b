"""docker-compose.yml cannot run here (no Docker engine), but it must be valid and wired."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_services_are_kafka_redis_server_and_worker() -> None:
    assert set(COMPOSE["services"]) == {"kafka", "redis", "server", "worker"}
    assert COMPOSE["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert COMPOSE["services"]["redis"]["image"].startswith("redis:")


def test_kafka_runs_in_kraft_mode() -> None:
    env = COMPOSE["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # weir creates topics itself


def test_server_and_worker_share_the_weir_variables() -> None:
    server = COMPOSE["services"]["server"]["environment"]
    worker = COMPOSE["services"]["worker"]["environment"]
    assert server == worker
    assert server["WEIR_KAFKA_BOOTSTRAP"] == "kafka:9092"
    assert server["WEIR_REDIS_URL"].startswith("redis://redis:6379")
    assert "WEIR_TOKEN" in server


def test_weir_services_build_the_repo_image_and_run_weir() -> None:
    assert (ROOT / "Dockerfile").exists()
    for name in ("server", "worker"):
        service = COMPOSE["services"][name]
        assert service["build"] == "."
        assert service["command"][0] == "weir"


def test_the_weir_variables_are_ones_weir_reads() -> None:
    from control.settings import Settings
    from streams.settings import WorkerSettings

    known = {
        f"WEIR_{name.upper()}" for name in (*Settings.model_fields, *WorkerSettings.model_fields)
    }
    assert set(COMPOSE["services"]["server"]["environment"]) <= known


def test_the_extra_worker_comes_back_after_a_redeploy_stops_it() -> None:
    assert COMPOSE["services"]["worker"]["restart"] in ("always", "unless-stopped")


def test_kafka_has_the_embedded_brokers_settings() -> None:
    from control.apache_kafka.broker import broker_settings

    env = COMPOSE["services"]["kafka"]["environment"]
    for key, value in broker_settings().items():
        assert env.get("KAFKA_" + key.upper().replace(".", "_")) == value, key


def test_kafka_runs_the_embedded_brokers_garbage_collector_settings() -> None:
    from control.apache_kafka.broker import GC_OPTIONS

    options = COMPOSE["services"]["kafka"]["environment"]["KAFKA_JVM_PERFORMANCE_OPTS"].split()
    assert set(GC_OPTIONS) <= set(options)


def test_kafka_runs_the_embedded_brokers_version() -> None:
    from control.apache_kafka.jars import kafka_version

    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{kafka_version()}"


def test_the_brokers_default_partitions_are_the_topic_maps() -> None:
    from control.apache_kafka.broker import broker_settings

    topics = yaml.safe_load((ROOT / "topics.yaml").read_text())
    assert int(broker_settings()["num.partitions"]) == topics["defaults"]["partitions"]


def test_the_broker_takes_every_record_weir_may_send() -> None:
    from control.apache_kafka.broker import broker_settings
    from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings

    limit = WorkerSettings.model_fields["max_message_bytes"].default + RECORD_OVERHEAD_BYTES
    assert int(broker_settings()["message.max.bytes"]) == limit
    assert int(broker_settings()["replica.fetch.max.bytes"]) >= limit
