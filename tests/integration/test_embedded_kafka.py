"""The embedded Apache Kafka broker runs with the settings weir gives it, as the broker
itself reports them: weir's contract (broker.properties) and its one-machine sizing."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from control.apache_kafka.broker import ONE_MACHINE, broker_settings
from control.embedded import Service


async def _broker_configs(bootstrap: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, "1")])
    finally:
        await admin.close()
    [(_, _, _, _, entries, *_)] = response.resources
    return {name: value for name, value, *_ in entries}


def test_the_embedded_broker_reports_weirs_settings_and_its_one_machine_sizing(
    broker: str, kafka_service: Service
) -> None:
    if broker != "kafka":
        pytest.skip("Apache Kafka's own settings; Tansu has none of these")
    configs = asyncio.run(_broker_configs(kafka_service.address))
    wanted = {**broker_settings(), **ONE_MACHINE}
    assert {name: configs.get(name) for name in wanted} == wanted


LIVE_HEAP_LIMIT_MIB = 112
"""The log cleaner's default key map alone is 128 MiB of heap; with the one-machine setting
the broker's live heap was 60-70 MiB (bench/README.md, 2026-12-06 evening)."""


def _jcmd(pid: int, command: str) -> str:
    java = shutil.which("java")
    assert java, "the embedded Apache Kafka broker runs on java"
    jcmd = Path(java).resolve().with_name("jcmd")
    if not jcmd.exists():
        pytest.skip(f"no jcmd beside {java} (a JRE without the JDK's tools)")
    done = subprocess.run(
        [str(jcmd), str(pid), command], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout


def test_the_embedded_brokers_live_heap_leaves_out_the_cleaners_default_map(
    broker: str, kafka_service: Service
) -> None:
    if broker != "kafka":
        pytest.skip("the JVM broker's heap; Tansu is not a JVM")
    _jcmd(kafka_service.proc.pid, "GC.run")  # a full collection: what is left is live
    info = _jcmd(kafka_service.proc.pid, "GC.heap_info")
    used = re.search(r"heap\s+total \d+K, used (\d+)K", info)
    assert used, info
    assert int(used[1]) / 1024 < LIVE_HEAP_LIMIT_MIB, info
