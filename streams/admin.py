"""Creating and deleting topics through the Kafka admin API."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.topics import TopicSpec


async def ensure_topics(bootstrap: str, specs: Iterable[TopicSpec], timeout_s: float = 15.0) -> None:
    """Create every topic in `specs` that does not exist yet, with its partition count.

    Workers must never read auto-created topics: those get the broker's default
    partition count. Waits until the broker's metadata lists each topic.
    """
    specs = list({spec.name: spec for spec in specs}.values())
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in specs if s.name not in existing]
        if wanted:
            new = [NewTopic(s.name, s.partitions, 1, topic_configs=s.config) for s in wanted]
            try:
                response = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                response = None
            for name, code, *_ in getattr(response, "topic_errors", []) or []:
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"could not create topic {name!r}: Kafka error code {code}")
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            existing = set(await admin.list_topics())
            if all(s.name in existing for s in specs):
                return
            if asyncio.get_running_loop().time() > deadline:
                missing = sorted(s.name for s in specs if s.name not in existing)
                raise TimeoutError(f"topics {missing} did not appear within {timeout_s:.0f}s")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete topics that exist; missing ones are ignored."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        present = set(await admin.list_topics())
        doomed = [n for n in names if n in present]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()
