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
    """How long a consumer's fetch waits for data (a worker's, while idle: see
    `busy_fetch_wait_ms`). Some brokers (Tansu) never answer a waiting fetch early,
    so this bounds each hop's latency; raising it lowers idle CPU."""

    busy_fetch_wait_ms: int = Field(1, ge=1, le=10_000)
    """A worker's fetch wait while records flow (streams.clients.FetchPace)."""

    busy_for_ms: float = Field(100.0, ge=0)
    """How long after its last record a worker still counts as busy."""

    session_timeout_s: float = 6.0
    """Consumer-group session timeout: how soon a dead worker's partitions move."""

    rebalance_timeout_s: float = 5.0
    """How long a group waits for members to rejoin during a rebalance."""

    heartbeat_interval_s: float = 1.0
    """Consumer-group heartbeat interval."""

    max_poll_records: int = Field(500, ge=1)
    """Upper bound on records one poll returns, so consumers never fetch without bound."""

    max_partition_fetch_bytes: int = Field(1024 * 1024, ge=1024)
    """Upper bound on the bytes one fetch returns per partition (Kafka's
    `max.partition.fetch.bytes`); a larger record still comes back alone."""

    commit_interval_ms: float = Field(100.0, ge=0)
    """Least time between two offset commits of a busy worker: one commit covers every
    record delivered meanwhile. After a crash, up to this much work (plus what was in
    flight) is processed again; a rebalance or a stop commits at once."""

    max_message_bytes: int = Field(128 * 1024 * 1024, ge=1024)
    """Largest record a worker sends; a result over it is answered with an error
    instead. Kafka brokers refuse records over their own `message.max.bytes`
    (1 MB by default on Apache Kafka): raise that too for big messages."""

    max_batch_rows: int = Field(4096, ge=1)
    """Micro-batching: messages smaller than this are merged up to this many rows
    and run through a step at once (a chunk: what the worker runs, sends and commits
    together); larger messages run as they come. A step's per-call costs (decoding,
    the model's feed, the result columns, encoding) are paid once per chunk, and
    after a compute-heavy model evicted the CPU caches each costs several times
    more. onnxruntime itself runs at most 1024 rows at a time (its cost per row grows
    past that; engine.runtimes.onnx.RUN_ROWS). Measured in bench/bench_pipeline.py:
    256 -> 1024 gave cheap 256-row messages +13-17% rows/s; 1024 -> 4096 gave the
    heavy MLP 0.71-0.73 -> 0.79-0.91x raw onnxruntime and cheap 256-row
    messages +13%."""

    max_batch_wait_ms: float = Field(0.0, ge=0)
    """Micro-batching: how long a fetch of fewer than `max_batch_rows` records may
    wait for more. 0 (the default) takes only what has already arrived, which under
    load is already many messages; waiting adds that much latency to every step
    at low load (measured: 2 ms cost ~3 ms p50 per step) for no throughput gain
    in bench/bench_pipeline.py."""

    max_attempts: int = Field(3, ge=1)
    """Tries a message gets when a step fails in a way that may be transient;
    then it goes to the dead-letter topic. Malformed or misshaped input
    (CodecError, InputMismatch) goes there after its first try."""

    retry_backoff_ms: float = Field(50.0, ge=0)
    """Pause before the n-th retry of a failed message: n times this."""

    drain_timeout_s: float = Field(30.0, gt=0)
    """How long a stopping worker (hot swap, undeploy) may go without finishing a
    record while it drains its version's step topics before it exits anyway; a
    drain that keeps making progress is never cut short."""

    worker_heartbeat_s: float = 1.0
    """How often a worker reports its status to the registry."""
