"""The embedded Apache Kafka broker runs with the settings weir gives it, as the broker
itself reports them: weir's contract (broker.properties) and its one-machine sizing."""

from __future__ import annotations

import asyncio

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
