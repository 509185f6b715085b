"""Fixtures shared by every suite: example model files and real embedded services.

Every test that uses a broker runs on both embedded brokers, Tansu and Apache
Kafka (the `broker` fixture is parametrized; `--broker tansu|kafka` picks one).
Where Java or Maven is missing, the Kafka leg is skipped with that reason, except
in CI (`CI=true`), where a skipped Kafka leg is a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from control.apache_kafka.broker import start_kafka
from control.demo.models import diabetes_regressor
from control.embedded import Service, start_broker, start_redis
from control.settings import Settings
from streams.aiokafka_internals import read_holes_again, wake_fetcher_when_a_fetch_ends

BROKERS = ("tansu", "kafka")

# The tests' own Kafka clients (readers of result topics, producers of numbered records)
# read a Tansu fetch response's hole again as weir's do (streams.fetch_holes): a record the
# broker skipped is weir's test failing for Tansu's reason. They also fetch again as soon as
# a fetch ends, as weir's do.
read_holes_again()
wake_fetcher_when_a_fetch_ends()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--broker",
        choices=(*BROKERS, "both"),
        default="both",
        help="run the tests that need a broker on this embedded broker only",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker" in metafunc.fixturenames:
        chosen = metafunc.config.getoption("broker")
        kinds = BROKERS if chosen == "both" else (chosen,)
        metafunc.parametrize("broker", kinds, indirect=True, scope="session")


@pytest.fixture(scope="session")
def broker(request: pytest.FixtureRequest) -> str:
    """Which embedded broker this leg of the suite runs on: "tansu" or "kafka"."""
    kind: str = request.param
    missing = [tool for tool in ("java", "mvn") if kind == "kafka" and not shutil.which(tool)]
    if missing:
        reason = f"the Apache Kafka leg needs {' and '.join(missing)} on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI must run both brokers")
        pytest.skip(reason)
    return kind


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def diabetes_onnx(model_dir: Path) -> Path:
    """A real ONNX regressor: input float_input [None, 10], output variable [None, 1]."""
    return diabetes_regressor(model_dir / "diabetes.onnx")


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real redis-server on a free loopback port."""
    service = start_redis(tmp_path_factory.mktemp("redis"))
    yield service
    service.stop()


@pytest.fixture(scope="session")
def kafka_service(broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real broker of the leg's kind on a free loopback port."""
    folder = tmp_path_factory.mktemp(f"broker-{broker}")
    if broker == "kafka":
        service = start_kafka(folder / "data", folder, Settings().cache, say=lambda _: None)
    else:
        service = start_broker(folder)
    yield service
    service.stop()
