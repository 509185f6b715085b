"""confluent-kafka as a user's Python service runs it: produce requests, read their answers."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import Consumer, Producer

from streams.messages import CONTENT_TYPE, REQUEST_ID

Answer = tuple[dict[str, bytes], bytes]
"""An answer's headers and value, as a consumer reads them."""


def confluent_round_trip(
    bootstrap: str, topics: dict[str, str], sent: dict[str, tuple[str, bytes]], wait_s: float = 30.0
) -> dict[str, Answer]:
    """Produce each (content type, value) under its request id to the input topic; returns
    each request's answer off the result topic."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for request_id, (content_type, value) in sent.items():
        producer.produce(
            topics["input"],
            value=value,
            key=b"service",
            headers=[(CONTENT_TYPE, content_type.encode()), (REQUEST_ID, request_id.encode())],
        )
    assert producer.flush(wait_s) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"ck-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topics["output"]])
    got: dict[str, Answer] = {}
    deadline = time.monotonic() + wait_s
    try:
        while got.keys() != sent.keys() and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            headers = dict(message.headers() or [])
            request_id = headers.get(REQUEST_ID, b"").decode()
            if request_id in sent:
                got[request_id] = (headers, message.value() or b"")
    finally:
        consumer.close()
    assert got.keys() == sent.keys(), f"unanswered within {wait_s:.0f}s: {sent.keys() - got}"
    return got
