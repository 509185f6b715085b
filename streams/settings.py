"""Settings of the stream layer: how workers talk to Kafka."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    """Kafka consumer and group settings shared by every weir consumer.

    Read once from `WEIR_*` environment variables by an entry point and passed
    down; tests construct it directly.
    """

    model_config = SettingsConfigDict(env_prefix="WEIR_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""

    fetch_wait_ms: int = Field(5, ge=1, le=10_000)
    """How long a consumer's fetch waits for data. Some brokers (Tansu) never
    answer a waiting fetch early, so this bounds each hop's latency; raising it
    lowers idle CPU."""

    session_timeout_s: float = 6.0
    """Consumer-group session timeout: how soon a dead worker's partitions move."""

    rebalance_timeout_s: float = 5.0
    """How long a group waits for members to rejoin during a rebalance."""

    heartbeat_interval_s: float = 1.0
    """Consumer-group heartbeat interval."""

    max_poll_records: int = 500
    """Upper bound on records one poll returns, so consumers never fetch without bound."""

    max_batch_rows: int = 256
    """Micro-batching: single-row messages are merged up to this many rows."""

    max_batch_wait_ms: float = 2.0
    """Micro-batching: how long a partial batch may wait for more rows."""

    worker_heartbeat_s: float = 1.0
    """How often a worker reports its status to the registry."""
