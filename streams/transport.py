"""A faust transport whose consumers use weir's fetch wait and never commit past a record
they skipped.

faust-streaming's aiokafka driver hard-codes `fetch_max_wait_ms=1500`. On a
broker that does not answer a waiting fetch early (Tansu), that makes every
agent hop cost ~750 ms; this driver passes `WorkerSettings.fetch_wait_ms`
instead.

A faust stream skips a record fetched before a rebalance that reaches it
after (its generation is over) and acknowledges it, which lets its offset be
committed although nothing processed it; if the partition then moves before
the record is read again, it is lost. This consumer does not count such
acknowledgements, so the partition's owner reads the record again.

The transport is registered under the URL scheme `weir-kafka://` through the
`faust.transports` entry point in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka

SCHEME = "weir-kafka"
DEFAULT_FETCH_WAIT_MS = 5


def broker_url(bootstrap: str) -> str:
    """The faust broker URL for a bootstrap list, using this transport."""
    return ";".join(f"{SCHEME}://{server.strip()}" for server in bootstrap.split(","))


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read before start(): AIOKafkaConsumer builds its fetcher from it there.
        consumer._fetch_max_wait_ms = getattr(
            self.app, "weir_fetch_wait_ms", DEFAULT_FETCH_WAIT_MS
        )
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def ack(self, message: Any) -> bool:
        if message.generation_id != self.app.consumer_generation_id:
            message.acked = True  # nothing waits for it here any more...
            self._unacked_messages.discard(message)
            return False  # ...but its offset is not committed: it is read again
        return bool(super().ack(message))


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with a configurable fetch wait."""

    Consumer = _Consumer
