"""The broker a bench runs on, behind one function: Tansu (embedded) or Apache Kafka.

Every bench leg starts its broker through `start_broker(kind, log_dir)`, so a broker that
becomes available (Apache Kafka, once `control.embedded` can start it) is a change here
only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from control import embedded
from control.embedded import Service

Broker = Literal["tansu", "kafka"]
BROKERS: tuple[Broker, ...] = ("tansu", "kafka")


class BrokerUnavailable(RuntimeError):
    """The broker asked for cannot be started on this checkout."""


def start_broker(kind: Broker, log_dir: Path) -> Service:
    """A fresh broker of `kind` on a free loopback port, logging into `log_dir`."""
    log_dir.mkdir(parents=True, exist_ok=True)
    if kind == "tansu":
        return embedded.start_broker(log_dir)
    start_kafka = getattr(embedded, "start_kafka", None)
    if start_kafka is None:
        raise BrokerUnavailable("Apache Kafka: not available (control.embedded has no "
                                "start_kafka on this checkout)")
    service: Service = start_kafka(log_dir)
    return service
