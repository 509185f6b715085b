"""The step agent: decode, run one step of the pipeline, encode, forward.

Step 0 reads the pipeline's input topic (Arrow or pandas-records JSON), stamps
the request id and pipeline version, and starts the carried input; the last
step turns the message into result rows and sends them to the result topic and
the log topic. A failure becomes an error reply (so an HTTP caller hears of it)
and a dead-letter record; the agent moves on.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import faust

from engine import codecs
from engine.errors import WeirError
from engine.pipeline import CompiledPipeline
from streams.messages import Envelope

log = logging.getLogger(__name__)


@dataclass
class StepCounters:
    processed: int = 0
    failed: int = 0


@dataclass
class StepTopics:
    """Where one step reads from and writes to."""

    source: faust.TopicT
    next: faust.TopicT | None
    output: faust.TopicT
    logs: faust.TopicT
    dead_letter: faust.TopicT


def _request_id(message: Any) -> str:
    """A request id for records sent without one, stable across redelivery."""
    return f"{message.topic}-{message.partition}-{message.offset}"


def make_step_agent(
    app: faust.App, pipeline: CompiledPipeline, index: int, topics: StepTopics,
    counters: StepCounters,
) -> None:
    """Register the agent that runs step `index` of `pipeline` on `app`."""
    last = index == len(pipeline.steps) - 1

    async def handle(event: faust.EventT) -> None:
        message = event.message
        env = Envelope.parse(message.headers, default_request_id=_request_id(message))
        try:
            if index == 0:
                batch = codecs.decode(event.value, codecs.normalize_content_type(env.content_type))
                env = env.replace(
                    version=pipeline.version, content_type=codecs.ARROW_STREAM,
                    started_ns=env.started_ns or _timestamp_ns(message),
                )
                batch = pipeline.start(batch)
            else:
                batch = codecs.decode(event.value, codecs.ARROW_STREAM)
            batch = pipeline.run_step(index, batch)
        except WeirError as exc:
            counters.failed += 1
            await _fail(topics, event, env, pipeline.steps[index].label, exc)
            return
        counters.processed += 1
        if not last:
            await topics.next.send(key=message.key, value=codecs.encode(batch, codecs.ARROW_STREAM),
                                   headers=env.headers())
            return
        result = codecs.encode(pipeline.finish(batch, started_ns=env.started_ns), codecs.ARROW_STREAM)
        await topics.output.send(key=message.key, value=result, headers=env.headers())
        await topics.logs.send(key=message.key, value=result, headers=env.headers())

    async def agent(stream: faust.StreamT) -> None:
        async for event in stream.events():
            await handle(event)

    app.agent(topics.source, name=f"step-{index}")(agent)


async def _fail(topics: StepTopics, event: faust.EventT, env: Envelope, step: str,
                exc: WeirError) -> None:
    error = {"step": step, "type": type(exc).__name__, "message": str(exc)}
    log.warning("request %s failed in step %s: %s", env.request_id, step, exc)
    failed = env.replace(error=error)
    await topics.output.send(key=event.message.key, value=b"", headers=failed.headers())
    await topics.dead_letter.send(
        key=event.message.key, value=event.value,
        headers=failed.replace(extra={**env.extra, "weir-failed-at": str(time.time_ns()).encode(),
                                      "weir-source": json.dumps(
                                          [event.message.topic, event.message.partition,
                                           event.message.offset]).encode()}).headers(),
    )


def _timestamp_ns(message: Any) -> int:
    """The record's Kafka timestamp (faust gives seconds as a float) in ns."""
    return int(message.timestamp * 1_000_000_000) if message.timestamp else time.time_ns()

