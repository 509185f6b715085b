"""Bench-only shim (not weir code, not an MLServer setting): MLServer's Kafka consumer at the
bench's fetch wait.

MLServer 1.7 builds its AIOKafkaConsumer with aiokafka's default `fetch_max_wait_ms` (500)
and has no setting for it; the embedded Tansu broker holds every fetch for the full wait,
so each of MLServer's round trips would measure the broker's wait, not MLServer. This
folder goes on PYTHONPATH for the MLServer process only, with
WEIR_BENCH_MLSERVER_FETCH_WAIT_MS set: every AIOKafkaConsumer made without an explicit
`fetch_max_wait_ms` gets that value instead.
"""

import os

_WAIT = os.environ.get("WEIR_BENCH_MLSERVER_FETCH_WAIT_MS")

if _WAIT:
    import aiokafka

    _init = aiokafka.AIOKafkaConsumer.__init__

    def _init_with_wait(self, *topics, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("fetch_max_wait_ms", int(_WAIT))
        _init(self, *topics, **kwargs)

    aiokafka.AIOKafkaConsumer.__init__ = _init_with_wait
