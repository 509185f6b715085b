"""Settings of the stream layer: how workers talk to Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

WAKING_FETCH_WAIT_MS = 500
"""The fetch wait on a broker that answers a waiting fetch as soon as data arrives."""
WAKING_IDLE_FETCH_WAIT_MS = 3000
"""The idle fetch wait there: longer costs records no latency, and each fetch answered
empty costs the broker and the reader CPU (an idle stack on Apache Kafka: the broker's
request threads 0.83% of a core at 500 ms against 0.43 at 5,000; bench/README.md,
2026-12-06 midday)."""
RECORD_OVERHEAD_BYTES = 16 * 1024
"""What a record batch adds to the largest value weir sends (`max_message_bytes`): its
header and the record's headers. The broker's `message.max.bytes` and a producer's request
size are `max_message_bytes` plus this (control/apache_kafka/broker.properties)."""


class WorkerSettings(BaseSettings):
    """Kafka consumer and group settings shared by every weir consumer.

    Read once from `WEIR_*` environment variables by an entry point and passed
    down; tests construct it directly.
    """

    model_config = SettingsConfigDict(env_prefix="WEIR_", frozen=True, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma separated."""

    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """How every Kafka client weir creates connects (workers, gateway, log agent, admin)."""

    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism, with `kafka_sasl_username` and `kafka_sasl_password`."""

    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    kafka_ssl_cafile: Path | None = None
    """CA certificates (PEM) to trust for the brokers' TLS; unset: the system's."""

    kafka_ssl_certfile: Path | None = None
    """Client certificate (PEM), for brokers that ask for one; with `kafka_ssl_keyfile`."""

    kafka_ssl_keyfile: Path | None = None

    fetch_wait_ms: int = Field(5, ge=1, le=10_000)
    """How long a consumer's fetch waits for data (a worker's, between `busy_for_ms` and
    `idle_after_s` after its last record: streams.clients.FetchPace). Some brokers
    (Tansu) look for new records only a few times during a fetch's wait, so this bounds
    each hop's latency there; on a broker with transactions (Apache Kafka), which answers
    as soon as data arrives, the fetch waits default to WAKING_FETCH_WAIT_MS (idle:
    WAKING_IDLE_FETCH_WAIT_MS; streams.admin.resolved)."""

    busy_fetch_wait_ms: int = Field(1, ge=1, le=10_000)
    """A worker's fetch wait while records flow."""

    busy_for_ms: float = Field(100.0, ge=0)
    """How long after its last record a worker still counts as busy."""

    idle_fetch_wait_ms: int = Field(100, ge=1, le=10_000)
    """A worker's fetch wait once it has been idle for `idle_after_s`: idle polling costs
    little, and the first request after a long idle waits for at most this long."""

    idle_after_s: float = Field(2.0, ge=0)
    """How long after its last record a worker counts as idle."""

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
    flight) is processed again; a rebalance or a stop commits at once. Exactly once, it is
    also how long a transaction stays open after its first record, idle or not: records
    arriving meanwhile join it rather than wait for the broker to finish the last commit
    (0: commit as soon as the worker runs out of records, as a transaction that sent to a
    boundary topic does: `hop_commit_gap_ms`)."""

    hop_commit_gap_ms: float = Field(25.0, ge=0)
    """Exactly once: a transaction that sent to a boundary topic (the next stage of a cut
    chain reads it committed) commits as soon as the worker is idle, once this long has
    passed since the worker's last such commit: a lone record crosses each cut in one
    commit (~20 ms), and a worker under steady load commits at most every gap plus a
    commit.
    Measured (bench/README.md, 2026-12-06), a sidekick in the middle of a chain, 1-row
    requests on a warm Apache Kafka: at 50/s p50 52 ms (no gap: 20 ms; 100 ms intervals
    alone: 190 ms), at 200/s 53 ms (no gap: 71 ms; intervals: 169 ms), for 13-15% more of
    a core in the broker and 16-17% in the workers than intervals alone."""

    commit_interval_uncommitted_ms: float = Field(300.0, ge=0)
    """Exactly once: how long a transaction stays open, if longer than `commit_interval_ms`,
    while every record in it answers a request whose caller reads answers uncommitted (the
    HTTP gateway marks its requests so: messages.REPLY_UNCOMMITTED) and none went to a
    topic another worker reads (a boundary, a challenger's): nobody waits for its commit
    then, and each commit is work for the broker that delays the answers around it.
    Readers of `read_committed` (the log store) see such answers up to this late.
    Measured (bench/README.md, 2026-12-06 evening, bench_gateway at 500 requests/s on
    Apache Kafka, three alternating pairs): 300 ms against 100 gave p50 6.6-6.8 against
    7.3-9.4 ms."""

    commit_interval_behind_ms: float = Field(300.0, ge=0)
    """Exactly once: how long a transaction stays open while the worker is behind (its
    input holds committed records it has not read yet), if longer than
    `commit_interval_ms`. Each commit is work for the broker and the worker (it stopped
    the loop for 10-15 ms on Apache Kafka when this was measured; it runs beside the loop
    now), so a saturated worker commits less often; readers of
    `read_committed` see its answers up to this late, behind a backlog that delays them
    anyway. Measured in bench/bench_pipeline.py (heavy 1-step, Apache Kafka, two
    alternating pairs): 300 ms against 100 gave 0.66-0.68 against 0.57-0.63x raw
    onnxruntime."""

    max_message_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    """Largest record value weir sends (an HTTP request's record, a result); a result
    over it is answered with an error instead. The broker must take records of this
    size plus RECORD_OVERHEAD_BYTES (`message.max.bytes`; Apache Kafka's own default is
    1 MB): the embedded Apache Kafka and docker-compose.yml are set so."""

    exactly_once: bool | None = None
    """Commit each chunk's outputs and input offsets in one Kafka transaction. Unset:
    wherever the broker supports transactions (Apache Kafka does; Tansu does not: there
    weir delivers at least once and marks repeats)."""

    transaction_timeout_s: float = Field(30.0, gt=0)
    """How long a worker's transaction may stay open: the broker aborts one that is not
    committed in time (a frozen worker's), so readers of `read_committed` wait at most this
    long behind it. Longer than any chunk takes to run."""

    max_batch_rows: int = Field(4096, ge=1)
    """Micro-batching: messages smaller than this are merged up to this many rows
    and run through a step at once (a chunk: what the worker runs, sends and commits
    together); larger messages run as they come. A step's per-call costs (decoding,
    the model's feed, the result columns, encoding) are paid once per chunk, and
    after a compute-heavy model evicted the CPU caches each costs several times
    more. onnxruntime runs a chunk in slices of 256 or 1,024 rows, whichever the
    model's own chunks ran faster in (engine.runtimes._slices). Measured in
    bench/bench_pipeline.py: 256 -> 1024 gave cheap 256-row messages +13-17% rows/s; 1024 -> 4096 gave the
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

    kafka_wait_s: float = Field(60.0, ge=0)
    """How long a starting worker waits for Kafka to answer (a broker restarting) before
    it exits and is started again; a worker started again to finish a drain waits too,
    rather than exit while the broker is away."""

    worker_heartbeat_s: float = 1.0
    """How often a worker reports its status to the registry."""
