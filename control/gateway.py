"""The inference gateway: one service layer under every HTTP way in.

`Gateway.infer` produces a request onto the pipeline's input topic and waits for the
answer on its result topic, matched by request id (control._replies: a split's parts are
gathered and returned in input order; repeats and other callers' answers are ignored).
For a shadow-deployed pipeline the request asks for the challengers' answers too, and
waits for them, after the champion's, for at most `Settings.shadow_wait_s`; they come back
as `out_<challenger>.<field>` columns (`out_<challenger>.error` where a challenger failed).
Both `POST /pipelines/<name>` and the OIP v2 route call it. It needs Redis only to find a
pipeline's deployment (in a thread, not on the event loop; no such pipeline is a 404, one
not deployed a 409): with Redis away, a pipeline it has answered for before is still
answered (its workers keep serving), others get RegistryUnavailable (HTTP 503).

Under load:
- With `Settings.coalesce_requests`, concurrent requests for one pipeline go as one record
  (control._coalesce), its replies split back per request; a coalesced record answered
  with an error is sent again request by request, so one bad request fails alone.
- A request is refused at once with `Overloaded` (HTTP 503 with Retry-After) when the
  pipeline, at the rate it has been measured to answer, could not answer it within its
  deadline (control._admission), or when `Settings.max_in_flight` requests are in flight.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections import defaultdict

import pyarrow as pa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control._admission import Capacity
from control._coalesce import Coalescer, Waiting
from control._replies import Group, Pending, Replies
from control.errors import (
    InferenceError,
    InferenceTimeoutError,
    NotDeployedError,
    Overloaded,
    PayloadTooLarge,
    RegistryUnavailable,
)
from control.records import Deployment, PipelineVersion
from control.registry import Registry
from control.settings import Settings
from control.shared_lookups import SharedLookups
from engine import codecs
from engine.definition import ShadowStep
from streams.admin import probe_consumer
from streams.clients import connection_options
from streams.messages import Envelope
from streams.settings import RECORD_OVERHEAD_BYTES, WorkerSettings
from streams.topics import TopicMap

log = logging.getLogger(__name__)

DEPLOYMENT_TTL_S = 1.0
"""How long the gateway reuses a pipeline's deployment record rather than asking Redis again
(in a thread, shared by the requests that need it meanwhile: control.shared_lookups). A
redeploy or undeploy is seen within this long (not being deployed is never cached). While
Redis is away, the last deployment looked up serves on."""

SLOW_WRITE_S = 1.0
"""A request whose record takes this long to be written is logged (control.gateway
`_say_if_slow`)."""


class Gateway:
    """Sends batches through deployed pipelines and returns their result rows."""

    def __init__(
        self, settings: Settings, registry: Registry, topics: TopicMap, worker: WorkerSettings
    ) -> None:
        """`worker`: the Kafka clients' settings, resolved for the broker
        (streams.admin.resolved)."""
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self._worker = worker
        self._producer: AIOKafkaProducer | None = None
        self._ends: AIOKafkaConsumer | None = None  # where result topics end (Replies)
        self._replies: dict[str, Replies] = {}
        self._replies_lock = asyncio.Lock()
        self._in_flight = 0
        self._capacity: defaultdict[tuple[str, str], Capacity] = defaultdict(Capacity)
        self._coalescers: dict[tuple[str, bool], Coalescer] = {}
        self._challengers: dict[tuple[str, str, str], list[str]] = {}
        self._deployments: dict[tuple[str, str], tuple[float, Deployment]] = {}
        self._deployment_lookups = SharedLookups[tuple[str, str], Deployment | None](
            self._look_up_deployment
        )
        self._version_lookups = SharedLookups[tuple[str, str, str], PipelineVersion](
            lambda key: self.registry.get_version(*key)
        )

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            **connection_options(self._worker),
            linger_ms=0,
            max_request_size=self._worker.max_message_bytes + RECORD_OVERHEAD_BYTES,
        )
        await self._producer.start()
        self._ends = probe_consumer(self._worker, uncommitted=True)
        await self._ends.start()

    async def stop(self) -> None:
        for coalescer in self._coalescers.values():
            await coalescer.stop()
        for replies in self._replies.values():
            await replies.stop()
        if self._ends:
            await self._ends.stop()
        if self._producer:
            await self._producer.stop()

    async def _replies_for(self, topic: str) -> Replies:
        async with self._replies_lock:
            if topic not in self._replies:
                assert self._ends is not None, "start() first"
                replies = Replies(topic, self._worker, self._ends)
                await replies.start()
                self._replies[topic] = replies
            return self._replies[topic]

    def _look_up_deployment(self, key: tuple[str, str]) -> Deployment | None:
        """The pipeline's deployment from the registry (blocking); None if it has none, and
        EntityNotFoundError (404) if there is no such pipeline: one trip to a thread for both."""
        deployment = self.registry.get_deployment(*key)
        if deployment is None:
            self.registry.get_pipeline(*key)
        return deployment

    async def deployment(self, workspace: str, pipeline: str, *, fresh: bool = False) -> Deployment:
        """The pipeline's deployment (looked up at most every DEPLOYMENT_TTL_S unless `fresh`;
        the last one found while Redis is away); NotDeployedError (409) if it has none,
        EntityNotFoundError (404) if there is no such pipeline."""
        now = time.monotonic()
        cached = self._deployments.get((workspace, pipeline))
        if cached is not None and not fresh and now - cached[0] < DEPLOYMENT_TTL_S:
            return cached[1]
        try:
            deployment = await self._deployment_lookups.get((workspace, pipeline))
        except RegistryUnavailable:
            if cached is None:
                raise
            # Redis is away: the workers run what they loaded, so answer with what was looked
            # up last (and ask Redis again no sooner than DEPLOYMENT_TTL_S from now).
            self._deployments[(workspace, pipeline)] = (now, cached[1])
            return cached[1]
        if deployment is None:
            self._deployments.pop((workspace, pipeline), None)
            raise NotDeployedError(pipeline)
        self._deployments[(workspace, pipeline)] = (now, deployment)
        return deployment

    async def _shadow_challengers(self, workspace: str, pipeline: str, version: str) -> list[str]:
        """The challengers of every shadow step of a version (cached: versions never change)."""
        key = (workspace, pipeline, version)
        if key not in self._challengers:
            spec = (await self._version_lookups.get(key)).definition
            self._challengers[key] = [
                c.name
                for step in spec.steps
                if isinstance(step, ShadowStep)
                for c in step.challengers
            ]
        return self._challengers[key]

    def refuse_if_overloaded(
        self, workspace: str, pipeline: str, timeout_s: float | None = None
    ) -> None:
        """Raise Overloaded if a request for `pipeline` would be refused now: routes call it
        before decoding a body, so that a refusal under load costs little. `infer` checks
        again (and takes the request in)."""
        self._admit(
            pipeline,
            self._capacity.get((workspace, pipeline)),
            timeout_s or self.settings.request_timeout_s,
        )

    def _admit(self, pipeline: str, capacity: Capacity | None, timeout: float) -> None:
        """Refuse (Overloaded) a request that cannot be answered in time, or one too many."""
        limit = self.settings.max_in_flight
        if self._in_flight >= limit:
            raise Overloaded(f"{limit} requests are in flight (WEIR_MAX_IN_FLIGHT); retry shortly")
        if capacity is None:
            return
        wait = capacity.expected_wait_s()
        if wait > timeout:
            rate, drain_s = capacity.rate() or 0.0, capacity.drain_s(timeout)
            shown = f"{rate:.2g}" if rate < 10 else f"{rate:.0f}"
            when = "shortly" if drain_s <= 1 else f"in ~{math.ceil(drain_s)}s"
            raise Overloaded(
                f"pipeline {pipeline!r} answers about {shown} requests/s and "
                f"has {capacity.in_flight} in flight: a new request may wait ~{wait:.2g}s, "
                f"past its deadline of {timeout:g}s; retry {when}, send fewer requests at "
                "once, or give it a longer deadline (?timeout=)",
                retry_after_s=drain_s,
            )

    async def infer(
        self,
        workspace: str,
        pipeline: str,
        batch: pa.RecordBatch,
        timeout_s: float | None = None,
        *,
        trace: dict[str, bytes] | None = None,
        record: bytes | None = None,
    ) -> pa.RecordBatch:
        """Run `batch` through the deployed pipeline; returns its result rows. `trace`: the
        caller's W3C trace context (streams.trace.trace_headers), carried to the answer and
        its log rows (a request coalesced with others goes without it). `record`: an Arrow
        stream that decodes to `batch` (the caller's own bytes), sent as the request's record
        instead of encoding `batch` again."""
        timeout = timeout_s or self.settings.request_timeout_s
        deployment = await self.deployment(workspace, pipeline)
        challengers = await self._shadow_challengers(workspace, pipeline, deployment.version)
        # No await from this check to taking the request in: concurrent requests that all
        # passed it while a lookup ran would all be taken, past max_in_flight.
        self._admit(pipeline, self._capacity.get((workspace, pipeline)), timeout)
        capacity = self._capacity[(workspace, pipeline)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._in_flight += 1
        capacity.started()
        answered = False
        try:
            pending, shared = await self._ask(
                workspace,
                pipeline,
                batch,
                challengers,
                deadline,
                self.settings.coalesce_requests and not trace,
                trace,
                record,
            )
            if pending.answer.error is not None and shared and deadline > loop.time():
                log.info("a coalesced record failed; sending its requests one by one")
                pending, _ = await self._ask(
                    workspace, pipeline, batch, challengers, deadline, False, trace, record
                )
            answered = True
        finally:
            self._in_flight -= 1
            capacity.finished(answered)
        failed = pending.answer.error
        if failed is not None:
            error = failed.error or {}
            raise InferenceError(
                f"pipeline {pipeline!r} failed in step {error.get('step')!r}: "
                f"{error.get('message')}"
            )
        return pending.result()

    async def _ask(
        self,
        workspace: str,
        pipeline: str,
        batch: pa.RecordBatch,
        challengers: list[str],
        deadline: float,
        coalesce: bool,
        trace: dict[str, bytes] | None = None,
        record: bytes | None = None,
    ) -> tuple[Pending, bool]:
        """Send one request and wait for its answer (and its challengers', briefly); returns
        it and whether it went in a record with other requests."""
        assert self._producer is not None, "start() first"
        loop = asyncio.get_running_loop()
        replies = await self._replies_for(self.topics.output(workspace, pipeline).name)
        topic = self.topics.input(workspace, pipeline).name
        request_id = uuid.uuid4().hex
        pending = Pending(batch.num_rows, challengers, deadline - loop.time())
        waiting = Waiting(request_id, batch, pending)
        try:
            if coalesce:
                self._coalescer(topic, replies, bool(challengers)).submit(waiting)
                await asyncio.wait_for(waiting.sent, deadline - loop.time())
            else:
                value = record if record is not None else codecs.encode(batch, codecs.ARROW_STREAM)
                _check_size(value, self._worker.max_message_bytes)
                await replies.expect(request_id, pending, within_s=deadline - loop.time())
                started = loop.time()
                await self._producer.send_and_wait(
                    topic,
                    value,
                    headers=Envelope(
                        request_id,
                        reply_shadows=bool(challengers),
                        reply_uncommitted=True,
                        extra=trace or {},
                    ).headers(),
                )
                _say_if_slow(request_id, topic, loop.time() - started)
            await asyncio.wait_for(pending.answered.wait(), deadline - loop.time())
            if pending.answer.error is None:
                wait = min(self.settings.shadow_wait_s, max(deadline - loop.time(), 0))
                await asyncio.wait_for(pending.shadowed.wait(), wait)
        except TimeoutError:
            if not pending.answered.is_set():
                raise InferenceTimeoutError(
                    f"pipeline {pipeline!r} did not answer within its deadline of "
                    f"{pending.timeout_s:g}s; check "
                    "pipeline.status() and the worker logs, or raise the timeout"
                ) from None
            log.info("request %s: challengers did not all answer in time", request_id)
        finally:
            if waiting.group is None:
                replies.forget(request_id)
            elif waiting.group.leave():
                replies.forget(waiting.record_id)
        shared = waiting.group is not None and len(waiting.group.members) > 1
        return pending, shared

    def _coalescer(self, topic: str, replies: Replies, reply_shadows: bool) -> Coalescer:
        key = (topic, reply_shadows)
        if key not in self._coalescers:

            async def send(group: list[Waiting]) -> None:
                await self._send_record(topic, replies, reply_shadows, group)

            self._coalescers[key] = Coalescer(
                send, self.settings.coalesce_max_rows, self.settings.coalesce_linger_ms / 1000
            )
        return self._coalescers[key]

    async def _send_record(
        self, topic: str, replies: Replies, reply_shadows: bool, group: list[Waiting]
    ) -> None:
        """Produce `group`'s requests as one record (a lone request as itself); requests
        too big together for one record go one by one."""
        assert self._producer is not None
        limit = self._worker.max_message_bytes
        if len(group) == 1:
            value = codecs.encode(group[0].batch, codecs.ARROW_STREAM)
        else:
            value = codecs.encode(pa.concat_batches([w.batch for w in group]), codecs.ARROW_STREAM)
            if len(value) > limit:
                for waiting in group:
                    try:
                        await self._send_record(topic, replies, reply_shadows, [waiting])
                    except Exception as exc:  # that request's own error (e.g. too large)
                        if not waiting.sent.done():
                            waiting.sent.set_exception(exc)
                    else:
                        if not waiting.sent.done():
                            waiting.sent.set_result(None)
                return
        _check_size(value, limit)
        if len(group) == 1:
            only = group[0]
            await replies.expect(only.request_id, only.pending)
            env = Envelope(only.request_id, reply_shadows=reply_shadows, reply_uncommitted=True)
        else:
            record_id = uuid.uuid4().hex
            together = Group([(w.request_id, w.pending) for w in group])
            for waiting in group:
                waiting.group, waiting.record_id = together, record_id
            await replies.expect(record_id, together)
            env = Envelope(
                record_id,
                reply_shadows=reply_shadows,
                reply_uncommitted=True,
                requests=together.requests,
            )
        started = time.monotonic()
        await self._producer.send_and_wait(topic, value, headers=env.headers())
        _say_if_slow(env.request_id, topic, time.monotonic() - started)


def _say_if_slow(request_id: str, topic: str, took_s: float) -> None:
    """Log a request whose record took SLOW_WRITE_S or more to be written: that part of
    its time to answer went to the broker's acknowledgement (or to this server's event
    loop), not to the pipeline's workers."""
    if took_s >= SLOW_WRITE_S:
        log.warning(
            "request %s: writing its record to %s took %.1fs (the broker was slow to "
            "acknowledge it, or this server's event loop was held up)",
            request_id,
            topic,
            took_s,
        )


def _check_size(value: bytes, limit: int) -> None:
    """Refuse a request whose record the broker would refuse (or weir's workers could not
    answer): what was wrong and which setting to change."""
    if len(value) > limit:
        raise PayloadTooLarge(
            f"the request is {len(value)} bytes as a Kafka record, over WEIR_MAX_MESSAGE_BYTES "
            f"({limit}); send fewer rows per request, or raise WEIR_MAX_MESSAGE_BYTES and the "
            "broker's message.max.bytes together"
        )
