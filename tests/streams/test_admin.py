"""streams/admin.py on the real broker: a topic deleted is gone from the listing when the call
returns.

Apache Kafka answers a delete before its metadata drops the topic: a listing straight after
the call showed a retired deployment's topics now and then (a CI run of
test_retirement_redis_away.py), and an `ensure_topics` straight after would take the dying
topic for one that exists."""

from __future__ import annotations

from control.embedded import Service
from streams.admin import delete_topics, ensure_topics, topic_names
from streams.settings import WorkerSettings
from streams.topics import TopicSpec


async def test_deleted_topics_are_unlisted_when_the_call_returns(kafka_service: Service) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    specs = [TopicSpec(f"admin-test.delete{i}", 2) for i in range(3)]
    for _ in range(3):  # the race showed now and then: try it a few times
        await ensure_topics(settings, specs)
        await delete_topics(settings, [s.name for s in specs] + ["admin-test.never-was"])
        assert not {s.name for s in specs} & set(await topic_names(settings))
