"""The embedded Apache Kafka broker: one KRaft node on free loopback ports, data under WEIR_HOME.

`weir up --broker kafka` (or WEIR_BROKER=kafka) and the test fixtures start it
the same way: the jars come from Maven once (control.apache_kafka.jars), the
storage is formatted the first time only (so topics, offsets and logs survive
`weir down`/`weir up`), and the broker runs with `broker.properties` (the
settings weir depends on, the same as docker-compose.yml's) plus its
listeners. It is one node acting as broker and controller; the controller
quorum is named in the config (static), so each start may take new ports.

Example:
    kafka = start_kafka(home / "kafka", home / "run", cache, say=print)
    ...  # clients connect to kafka.address
    kafka.stop()
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from control.apache_kafka.jars import HERE, kafka_jars, kafka_version, require_tool
from control.embedded import Service, free_port, spawn, stop_process, wait_for_port
from control.errors import StackError

BROKER_PROPERTIES = HERE / "broker.properties"
LOG4J = HERE / "log4j2.properties"
GC_OPTIONS = [
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    # Kafka's documented setting. With the 1 MiB regions G1 picks for this heap, every
    # produce request over 512 KiB is a "humongous" object, allocated in the old
    # generation, and each starts a concurrent cycle: under 256-row messages that was
    # two fifths of the broker's CPU (bench/README.md, 2026-12-05 mid-morning).
    "-XX:G1HeapRegionSize=16M",
]
"""The garbage collector's settings; docker-compose.yml gives its broker the same."""
JVM_OPTIONS = [
    "-Xms256m",
    "-Xmx1g",
    *GC_OPTIONS,
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
]
READY_TIMEOUT_S = 90.0
"""A cold JVM on a busy 2-core machine takes 10-20 s to serve its first request."""


def broker_settings() -> dict[str, str]:
    """The settings weir depends on (`broker.properties`), as docker-compose.yml must set them."""
    settings = {}
    for line in BROKER_PROPERTIES.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


@dataclass(frozen=True)
class SecureListener:
    """A SASL_SSL listener beside the plain one, as managed Kafka services offer.

    :param keystore: a PEM file holding the broker's private key (PKCS#8, unencrypted)
        and its certificate chain.
    :param users: name -> password, accepted with SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN.
    :param truststore: a PEM file of CAs for client certificates (asked for, not required).
    """

    keystore: Path
    users: dict[str, str]
    truststore: Path | None = None
    port: int = field(default_factory=free_port)

    def properties(self) -> dict[str, str]:
        plain_users = " ".join(f'user_{name}="{password}"' for name, password in self.users.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        plain = f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
        props = {
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512,PLAIN",
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
            "listener.name.sasl_ssl.plain.sasl.jaas.config": plain,
            "listener.name.sasl_ssl.ssl.keystore.type": "PEM",
            "listener.name.sasl_ssl.ssl.keystore.location": str(self.keystore),
        }
        if self.truststore is not None:
            props |= {
                "listener.name.sasl_ssl.ssl.truststore.type": "PEM",
                "listener.name.sasl_ssl.ssl.truststore.location": str(self.truststore),
                "listener.name.sasl_ssl.ssl.client.auth": "requested",
            }
        return props

    def scram_credentials(self) -> list[str]:
        """`kafka-storage format --add-scram` arguments: KRaft stores SCRAM users in its
        metadata, so they are created when the storage is formatted."""
        return [
            arg
            for name, password in self.users.items()
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            for arg in ("--add-scram", f"{mechanism}=[name={name},password={password}]")
        ]


ONE_MACHINE = {
    # Kafka's defaults (8 request handler and 3 network threads) are sized for a broker
    # with a machine of its own; each idle thread wakes several times a second.
    "num.io.threads": "2",
    "num.network.threads": "1",
    # The controller appends a no-op record every 500 ms so that a cluster's brokers can
    # tell a quiet quorum from a stuck one (KIP-835); one node has no one to tell, and
    # the record and its publishing were a sixth of the idle broker's CPU.
    "metadata.max.idle.interval.ms": "0",
    # The log cleaner (it compacts the offsets and transaction topics) keeps a 128 MiB key
    # map on the heap for as long as the broker runs: two thirds of an idle broker's live
    # heap, enough to keep G1 marking concurrently every few seconds under load. The
    # internal topics of one node are small; a map that fills up only means another pass.
    "log.cleaner.dedupe.buffer.size": str(8 * 1024 * 1024),
}
"""The embedded broker shares its machine with weir: what it sets beyond broker.properties
(bench/README.md, 2026-12-06 late morning: an idle broker 2.0-2.5% of a core against
1.25-1.5)."""


def server_properties(
    data_dir: Path, port: int, controller_port: int, secure: SecureListener | None = None
) -> dict[str, str]:
    """The whole broker config: weir's settings, this node's listeners and storage."""
    listeners = [f"PLAINTEXT://127.0.0.1:{port}", f"CONTROLLER://127.0.0.1:{controller_port}"]
    advertised = [f"PLAINTEXT://127.0.0.1:{port}"]
    protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
    if secure is not None:
        listeners.append(f"SASL_SSL://127.0.0.1:{secure.port}")
        advertised.append(f"SASL_SSL://127.0.0.1:{secure.port}")
        protocols.append("SASL_SSL:SASL_SSL")
    return {
        **broker_settings(),
        **ONE_MACHINE,
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listeners": ",".join(listeners),
        "advertised.listeners": ",".join(advertised),
        "listener.security.protocol.map": ",".join(protocols),
        "log.dirs": str(data_dir / "logs"),
        **(secure.properties() if secure is not None else {}),
    }


def start_kafka(
    data_dir: Path,
    log_dir: Path,
    cache: Path,
    *,
    detach: bool = False,
    say: Callable[[str], None] = print,
    secure: SecureListener | None = None,
    port: int | None = None,
    controller_port: int | None = None,
) -> Service:
    """Start the broker (formatting `data_dir` the first time); returns once it answers.
    Free loopback ports unless `port` and `controller_port` are given (a restart on the
    ports its clients know)."""
    java = require_tool("java", "openjdk-17-jre-headless")
    libs = kafka_jars(cache, say=say)
    data_dir.mkdir(parents=True, exist_ok=True)
    port, controller_port = port or free_port(), controller_port or free_port()
    config = data_dir / "server.properties"
    config.write_text(
        "".join(
            f"{k}={v}\n"
            for k, v in server_properties(data_dir, port, controller_port, secure).items()
        )
    )
    os.chmod(config, 0o600)  # it may hold SASL passwords
    classpath = f"{libs}/*"
    if not (data_dir / "logs" / "meta.properties").exists():
        _format(java, classpath, config, secure)
    say(f"starting Apache Kafka {kafka_version()} (data in {data_dir}) ...")
    with open(log_dir / "kafka.log", "ab") as log:
        proc = spawn(
            [
                java,
                *JVM_OPTIONS,
                f"-Dlog4j2.configurationFile={LOG4J}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            log,
            detach,
        )
    try:
        wait_for_port(port, proc, "the Apache Kafka broker", timeout=READY_TIMEOUT_S)
        _wait_ready(f"127.0.0.1:{port}", proc)
    except BaseException:
        stop_process(proc)
        raise
    return Service("kafka", proc, port, f"127.0.0.1:{port}")


def new_cluster_id() -> str:
    """A random cluster id as Kafka's own `Uuid.randomUuid` makes them: never starting with
    '-', which the storage tool's argument parser would read as an option (1 in 64 did)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _format(java: str, classpath: str, config: Path, secure: SecureListener | None) -> None:
    cluster_id = new_cluster_id()
    args = [
        java,
        "-cp",
        classpath,
        f"-Dlog4j2.configurationFile={LOG4J}",
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(config),
        *(secure.scram_credentials() if secure is not None else []),
    ]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise StackError(f"formatting the Kafka storage failed:\n{done.stdout}{done.stderr}")


def _wait_ready(bootstrap: str, proc: subprocess.Popen[bytes]) -> None:
    """Block until the broker answers a metadata request (its port opens a little earlier)."""
    from aiokafka.admin import AIOKafkaAdminClient

    async def answered() -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            await admin.list_topics()
            return True
        except Exception:
            return False
        finally:
            await admin.close()

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"the Apache Kafka broker exited with code {proc.returncode} while "
                "starting; see run/kafka.log"
            )
        if asyncio.run(answered()):
            return
        time.sleep(0.2)
    raise StackError(f"the Apache Kafka broker did not answer within {READY_TIMEOUT_S:.0f}s")
