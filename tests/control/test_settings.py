"""control/settings.py: the environment is read once, when an entry point builds Settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from control.settings import Settings


def test_the_worker_settings_are_read_with_the_settings_and_not_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WEIR_DRAIN_TIMEOUT_S", "7")
    settings = Settings(kafka_bootstrap="broker:9092")
    monkeypatch.setenv("WEIR_DRAIN_TIMEOUT_S", "9")
    worker = settings.worker_settings()
    assert (worker.drain_timeout_s, worker.kafka_bootstrap) == (7.0, "broker:9092")
    assert Settings().worker.drain_timeout_s == 9.0  # fresh settings: built again


def test_the_stack_files_broker_reaches_the_worker_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEIR_KAFKA_BOOTSTRAP", raising=False)
    (tmp_path / "stack.json").write_text(json.dumps({"kafka_bootstrap": "127.0.0.1:4242"}))
    assert Settings.discover(home=tmp_path).worker_settings().kafka_bootstrap == "127.0.0.1:4242"


def test_without_a_broker_the_worker_settings_say_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WEIR_KAFKA_BOOTSTRAP", raising=False)
    with pytest.raises(ValueError, match="run `weir up` or set WEIR_KAFKA_BOOTSTRAP"):
        Settings(home=tmp_path).worker_settings()


def test_the_worker_settings_are_not_passed_on_as_a_variable() -> None:
    """`weir up` hands the server the fields set by hand as WEIR_* variables."""
    assert "worker" not in Settings(kafka_bootstrap="b:1").model_dump()
