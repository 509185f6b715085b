"""The consumer never counts a record its stream skipped as done (no broker needed:
the consumer is built, not started)."""

from __future__ import annotations

import faust
from faust.types import TP

from streams.transport import broker_url


def _consumer_and_message(generation: int) -> tuple[object, faust.types.Message]:
    app = faust.App("weir-test-acks", broker=broker_url("127.0.0.1:9"), web_enabled=False)
    app.topics._acking_topics.add("acks")  # as for a topic an agent reads, once started
    app.consumer_generation_id = 2
    message = faust.types.Message(topic="acks", partition=0, offset=7, timestamp=0.0,
                                  timestamp_type=0, headers=[], key=None, value=b"",
                                  checksum=None, generation_id=generation)
    return app.consumer, message


def test_a_record_of_the_current_generation_is_counted_when_acked() -> None:
    consumer, message = _consumer_and_message(generation=2)
    assert consumer.ack(message)
    assert consumer._acked[TP("acks", 0)] == [7]


def test_a_record_fetched_before_the_rebalance_is_not_counted() -> None:
    consumer, message = _consumer_and_message(generation=1)
    assert not consumer.ack(message)
    assert message.acked  # nothing waits for it any more
    assert consumer._acked[TP("acks", 0)] == []
