"""control/embedded.py start_redis: the settings the embedded redis-server runs with."""

from __future__ import annotations

import redis

from control.embedded import Service


def test_the_embedded_redis_keeps_an_append_only_file_and_wakes_once_a_second(
    redis_service: Service,
) -> None:
    client = redis.Redis.from_url(redis_service.address)
    try:
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("hz") == {"hz": "1"}  # an idle stack's wakes cost CPU
    finally:
        client.close()
