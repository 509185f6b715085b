"""Fixtures shared by every suite: example model files and real embedded services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from control.demo.models import diabetes_regressor
from control.embedded import Service, start_broker, start_redis


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
def kafka_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real Tansu broker on a free loopback port."""
    service = start_broker(tmp_path_factory.mktemp("kafka"))
    yield service
    service.stop()
