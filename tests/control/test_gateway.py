"""control/gateway.py: what the gateway decides in process, against a real redis-server and,
where a request goes through Kafka, the real broker (this test plays the pipeline's worker:
it reads the request from the input topic and writes the answer to the result topic).

Refusals under load (503 with Retry-After, at once), unknown and undeployed pipelines, the
request record's shape and the answer's (rows back in input order, a failed step as an
error that names it, a deadline passed as a timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from control._admission import Capacity
from control._replies import Pending, Replies
from control.embedded import Service
from control.errors import InferenceError, InferenceTimeoutError, Overloaded
from control.gateway import SLOW_WRITE_S, Gateway, _say_if_slow
from control.records import Deployment, ModelVersion
from control.registry import DEFAULT_WORKSPACE as WS
from control.registry import Registry
from control.settings import Settings
from engine import codecs
from engine.columns import META_ROW
from engine.definition import ModelStep, PipelineSpec
from streams.admin import ensure_topics, probe_consumer
from streams.messages import Envelope
from streams.settings import WorkerSettings
from streams.topics import TopicMap
from tests.control._asgi import in_process

BODY = codecs.encode(pa.RecordBatch.from_pydict({"x": [1.0]}), codecs.ARROW_STREAM)


def _slow_capacity() -> Capacity:
    """A pipeline measured at one answer per 10 busy seconds, with one request in flight."""
    now = [0.0]
    capacity = Capacity(clock=lambda: now[0])
    capacity.started()
    now[0] = 10.0
    capacity.finished(answered=True)
    capacity.started()
    return capacity


def _add_pipeline(registry: Registry, name: str, *, deployed: bool) -> None:
    model = registry.add_model(
        ModelVersion(
            name="m",
            version=str(uuid.uuid4()),
            sha="0" * 64,
            runtime="onnx",
            workspace=WS,
            file_name="m.onnx",
            size=1,
        )
    )
    registry.get_or_create_pipeline(WS, name)
    version = registry.add_version(WS, name, PipelineSpec(steps=[ModelStep(model=model.ref())]))
    if deployed:
        registry.set_deployment(Deployment(workspace=WS, pipeline=name, version=version.version))


# -- decided before anything reaches Kafka ------------------------------------------------
async def test_a_request_that_cannot_be_answered_in_time_gets_503_with_retry_after_at_once(
    redis_service: Service, tmp_path: Path
) -> None:
    async for app in in_process(redis_service, tmp_path):
        app.state.gateway._capacity[(WS, "slow")] = _slow_capacity()
        refused = await app.http.post(
            "/pipelines/slow?timeout=1", content=BODY, headers={"Content-Type": codecs.ARROW_STREAM}
        )
        # about when the requests ahead would have left: (30 - 1) / 2 s
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "15"
        assert refused.json()["error"] == "Overloaded"
        message = refused.json()["message"]
        assert "answers about 0.1 requests/s and has 1 in flight" in message
        assert "may wait ~30s, past its deadline of 1s; retry in ~15s" in message
        # one it meets only if the request in flight takes no longer than its mean, 10 s
        close = await app.http.post(
            "/pipelines/slow?timeout=25",
            content=BODY,
            headers={"Content-Type": codecs.ARROW_STREAM},
        )
        assert close.status_code == 503
        # a deadline it can meet: not refused on that ground (then: no such pipeline)
        later = await app.http.post(
            "/pipelines/slow?timeout=60",
            content=BODY,
            headers={"Content-Type": codecs.ARROW_STREAM},
        )
        assert later.status_code == 404


async def test_an_unknown_pipeline_is_404_and_an_undeployed_one_409(
    redis_service: Service, tmp_path: Path
) -> None:
    async for app in in_process(redis_service, tmp_path):
        _add_pipeline(app.state.registry, "idle", deployed=False)
        unknown = await app.http.post(
            "/pipelines/nope", content=BODY, headers={"Content-Type": codecs.ARROW_STREAM}
        )
        assert unknown.status_code == 404 and "nope" in unknown.json()["message"]
        undeployed = await app.http.post(
            "/pipelines/idle", content=BODY, headers={"Content-Type": codecs.ARROW_STREAM}
        )
        assert undeployed.status_code == 409
        assert undeployed.json()["error"] == "NotDeployedError"


async def test_a_versioned_oip_request_sees_a_redeploy_the_gateway_has_not_looked_up_yet(
    redis_service: Service, tmp_path: Path
) -> None:
    """The gateway reuses a deployment it looked up for a second; a request naming the
    version deployed since then is not refused as naming another one."""
    async for app in in_process(redis_service, tmp_path):
        registry = app.state.registry
        _add_pipeline(registry, "swapped", deployed=True)
        before = await app.state.gateway.deployment(WS, "swapped")  # now reused for a second
        spec = registry.get_version(WS, "swapped", before.version).definition
        after = registry.add_version(
            WS, "swapped", spec.model_copy(update={"steps": spec.steps * 2})
        )
        registry.set_deployment(Deployment(workspace=WS, pipeline="swapped", version=after.version))
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
        other = await app.http.post("/v2/models/swapped/versions/0badcafe/infer", json=body)
        assert other.status_code == 404 and "0badcafe" in other.json()["error"]
        # Past the version check it goes on to Kafka, which is not started here.
        with pytest.raises(AssertionError, match=r"start\(\) first"):
            await app.http.post(f"/v2/models/swapped/versions/{after.version}/infer", json=body)


# -- through the broker ----------------------------------------------------------------
@pytest.fixture
def registry(redis_service: Service) -> Iterator[Registry]:
    registry = Registry(redis_service.address)
    registry.redis.flushdb()
    registry.ensure_workspace(WS)
    yield registry


@pytest.fixture
async def served(
    kafka_service: Service, registry: Registry, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, str]]:
    """A started gateway (at most one request in flight) and a deployed pipeline's name."""
    settings = Settings(home=tmp_path, kafka_bootstrap=kafka_service.address, max_in_flight=1)
    worker = settings.worker_settings()
    topics = TopicMap.load()
    name = f"gw-{uuid.uuid4().hex[:8]}"
    _add_pipeline(registry, name, deployed=True)
    await ensure_topics(worker, [topics.input(WS, name), topics.output(WS, name)])
    gateway = Gateway(settings, registry, topics, worker)
    await gateway.start()
    try:
        yield gateway, name
    finally:
        await gateway.stop()


async def _play_worker(gateway: Gateway, name: str, answer: str) -> Envelope:
    """Read one request from the pipeline's input topic and answer it: "rows" (its rows
    doubled, in reverse order, each with its row index) or "error"; returns the request's
    envelope."""
    bootstrap = gateway._worker.kafka_bootstrap
    consumer = AIOKafkaConsumer(
        gateway.topics.input(WS, name).name,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await consumer.start()
    await producer.start()
    try:
        record = await consumer.getone()
        env = Envelope.parse(record.headers)
        batch = codecs.decode(record.value, env.content_type)
        if answer == "error":
            reply = Envelope(env.request_id, error={"step": "m", "message": "bad input"})
            value = b""
        else:
            order = list(reversed(range(batch.num_rows)))
            x = batch.column("x").to_pylist()
            value = codecs.encode(
                pa.RecordBatch.from_pydict(
                    {"out.y": [2 * x[i] for i in order], META_ROW: pa.array(order, pa.int32())}
                ),
                codecs.ARROW_STREAM,
            )
            reply = Envelope(env.request_id)
        await producer.send_and_wait(
            gateway.topics.output(WS, name).name, value, headers=reply.headers()
        )
        return env
    finally:
        await producer.stop()
        await consumer.stop()


async def test_a_request_goes_as_one_arrow_record_and_its_answer_comes_back_in_row_order(
    served: tuple[Gateway, str],
) -> None:
    gateway, name = served
    batch = pa.RecordBatch.from_pydict({"x": [1.0, 2.0, 3.0]})
    worker = asyncio.create_task(_play_worker(gateway, name, "rows"))
    answer = await gateway.infer(WS, name, batch, timeout_s=30)
    request = await worker
    assert request.content_type == codecs.ARROW_STREAM and request.request_id
    assert not request.reply_shadows and request.requests is None
    assert request.reply_uncommitted  # its reply reader reads uncommitted: no commit awaited
    assert answer.column("out.y").to_pylist() == [2.0, 4.0, 6.0]
    assert answer.column(META_ROW).to_pylist() == [0, 1, 2]


async def test_a_failed_step_is_an_inference_error_that_names_it(
    served: tuple[Gateway, str],
) -> None:
    gateway, name = served
    worker = asyncio.create_task(_play_worker(gateway, name, "error"))
    with pytest.raises(InferenceError, match=r"failed in step 'm': bad input"):
        await gateway.infer(WS, name, pa.RecordBatch.from_pydict({"x": [1.0]}), timeout_s=30)
    await worker


async def test_past_max_in_flight_a_request_is_refused_and_an_unanswered_one_times_out(
    served: tuple[Gateway, str],
) -> None:
    gateway, name = served
    batch = pa.RecordBatch.from_pydict({"x": [1.0]})
    waiting = asyncio.create_task(gateway.infer(WS, name, batch, timeout_s=1.5))
    await asyncio.sleep(0.3)  # in flight: nothing answers it
    with pytest.raises(Overloaded, match=r"1 requests are in flight \(WEIR_MAX_IN_FLIGHT\)"):
        await gateway.infer(WS, name, batch, timeout_s=1)
    with pytest.raises(InferenceTimeoutError, match="did not answer within its deadline"):
        await waiting
    gateway.refuse_if_overloaded(WS, name)  # none in flight now: admitted


async def test_a_result_topics_reader_pauses_while_no_request_waits_and_starts_again_at_its_end(
    served: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers nobody waits for (a pipeline also fed over Kafka) are not read once no request
    has waited for a while; the next request is answered, from the topic's end: an answer
    with its id written while the reader was paused is never handed to it, however long
    looking up that end takes (a second here)."""
    monkeypatch.setattr("control._replies.QUIET_PAUSE_S", 0.2)
    gateway, name = served
    topic = gateway.topics.output(WS, name).name
    async with _reader(topic, gateway._worker) as replies, _producer(gateway) as producer:
        await _paused(replies)
        look_up = replies._ends.end_offsets

        async def slowly(partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
            await asyncio.sleep(1.0)
            return await look_up(partitions)

        monkeypatch.setattr(replies._ends, "end_offsets", slowly)
        await producer.send_and_wait(topic, _answer(1.0), headers=Envelope("r1").headers())
        pending = Pending(1, [])
        await replies.expect("r1", pending)
        assert not replies.paused
        await producer.send_and_wait(topic, _answer(2.0), headers=Envelope("r1").headers())
        await asyncio.wait_for(pending.answered.wait(), 30)
        assert pending.result().column("out.y").to_pylist() == [2.0]


async def test_a_paused_reader_starts_again_without_waiting_for_the_fetch_it_left_in_flight(
    broker: str, served: tuple[Gateway, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader pauses with a fetch in flight (on Apache Kafka it waits up to 3 s while
    idle), and a broker answers a connection's requests in order. The next request must not
    wait for that fetch before it is sent: the fetch waits for records, and the only one
    coming is that request's answer. With every wait at a minute, a request held behind the
    fetch could not be sent within 10 s."""
    if broker != "kafka":
        pytest.skip("long fetch waits are Apache Kafka's: weir's readers wait 1-100 ms on Tansu")
    monkeypatch.setattr("control._replies.QUIET_PAUSE_S", 0.2)
    gateway, name = served
    topic = gateway.topics.output(WS, name).name
    minute = {f: 60_000 for f in ("fetch_wait_ms", "busy_fetch_wait_ms", "idle_fetch_wait_ms")}
    settings = gateway._worker.model_copy(update=minute)
    async with _reader(topic, settings) as replies, _producer(gateway) as producer:
        await _paused(replies)
        pending = Pending(1, [])
        await replies.expect("r1", pending, within_s=10)
        await producer.send_and_wait(topic, _answer(3.0), headers=Envelope("r1").headers())
        await asyncio.wait_for(pending.answered.wait(), 30)
        assert pending.result().column("out.y").to_pylist() == [3.0]


@contextlib.asynccontextmanager
async def _reader(topic: str, settings: WorkerSettings) -> AsyncIterator[Replies]:
    """A started result-topic reader, with a probe of its own for where the topic ends."""
    ends = probe_consumer(settings, uncommitted=True)
    await ends.start()
    replies = Replies(topic, settings, ends)
    try:
        await replies.start()
        yield replies
    finally:
        await replies.stop()
        await ends.stop()


@contextlib.asynccontextmanager
async def _producer(gateway: Gateway) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=gateway._worker.kafka_bootstrap)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


async def _paused(replies: Replies) -> None:
    async with asyncio.timeout(30):
        while not replies.paused:
            await asyncio.sleep(0.05)


def _answer(y: float) -> bytes:
    return codecs.encode(pa.RecordBatch.from_pydict({"out.y": [y]}), codecs.ARROW_STREAM)


def test_a_request_whose_record_was_slow_to_write_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="control.gateway"):
        _say_if_slow("quick", "t.in", SLOW_WRITE_S / 10)
        _say_if_slow("slow", "t.in", SLOW_WRITE_S * 15)
    assert "quick" not in caplog.text
    assert "request slow: writing its record to t.in took 15.0s" in caplog.text
