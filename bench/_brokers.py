"""The broker a bench runs on, behind one function: Tansu (embedded) or Apache Kafka
(control.apache_kafka: needs Java and Maven; its jars are fetched once into the weir
cache). Every bench leg starts its broker through `start_broker(kind, log_dir)`."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from control import embedded
from control.apache_kafka.broker import start_kafka
from control.embedded import Service
from control.settings import Settings

Broker = Literal["tansu", "kafka"]
BROKERS: tuple[Broker, ...] = ("tansu", "kafka")


def start_broker(kind: Broker, log_dir: Path) -> Service:
    """A fresh broker of `kind` on a free loopback port, logging into `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    if kind == "tansu":
        return embedded.start_broker(log_dir)
    return start_kafka(log_dir / "kafka-data", log_dir, Settings().cache, say=lambda _: None)
