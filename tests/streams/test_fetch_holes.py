"""A fetch response with a hole is read up to the hole and fetched again from there
(streams.fetch_holes): Tansu 0.6.0 answers fetches at a partition's end while another
producer's record below it is still being written, and a reader that took the response
whole never read that record (about 1 in 1,000 with two producers at full speed)."""

from __future__ import annotations

import asyncio
import logging

import aiokafka.consumer.fetcher as aiokafka_fetcher
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from control.embedded import Service
from streams.admin import ensure_topics
from streams.clients import connection_options
from streams.fetch_holes import HoleWatch
from streams.settings import WorkerSettings
from streams.topics import TopicSpec

TP = TopicPartition("t", 0)


def test_a_response_without_holes_is_read_whole() -> None:
    assert HoleWatch().readable(TP, 10, [(10, 12), (12, 13), (13, 20)]) == 3
    # Asked from inside a batch: the batch starts before the offset asked for.
    assert HoleWatch().readable(TP, 11, [(10, 12), (12, 13)]) == 2
    assert HoleWatch().readable(TP, 10, []) == 0


def test_a_response_is_read_up_to_its_first_hole() -> None:
    watch = HoleWatch()
    assert watch.readable(TP, 958, [(958, 959), (960, 961), (961, 962)]) == 1
    assert watch.readable(TP, 5491, [(5492, 5493)]) == 0  # a hole where the fetch began


def test_a_hole_that_never_fills_is_read_past_after_the_patience(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = HoleWatch(patience_s=0.05)
    assert watch.readable(TP, 100, [(101, 105)]) == 0
    asyncio.run(asyncio.sleep(0.06))
    with caplog.at_level(logging.WARNING):
        assert watch.readable(TP, 100, [(101, 105)]) == 1
    assert "offset 100 was never returned" in caplog.text
    # Another hole is waited for afresh.
    assert watch.readable(TP, 200, [(201, 205)]) == 0


def test_every_weir_client_reads_holes_again() -> None:
    records_class = aiokafka_fetcher.PartitionRecords
    patched = records_class.__init__
    records_class.__init__ = getattr(patched, "unpatched", patched)  # as aiokafka has it
    try:
        connection_options(WorkerSettings())
        assert getattr(records_class.__init__, "weir_holes", False)
    finally:
        records_class.__init__ = patched


def test_a_reader_at_the_end_of_a_partition_written_by_several_producers_misses_nothing(
    broker: str, kafka_service: Service
) -> None:
    settings = WorkerSettings(kafka_bootstrap=kafka_service.address)
    producers_count, each = 3, 2000
    tp = TopicPartition(f"holes-{broker}", 0)

    async def scenario() -> list[int]:
        await ensure_topics(settings, [TopicSpec(tp.topic, 1)])
        producers = [
            AIOKafkaProducer(**connection_options(settings), linger_ms=0)
            for _ in range(producers_count)
        ]
        reader = AIOKafkaConsumer(
            **connection_options(settings), enable_auto_commit=False, fetch_max_wait_ms=5
        )
        for client in (*producers, reader):
            await client.start()
        reader.assign([tp])
        await reader.seek_to_beginning(tp)
        offsets: list[int] = []

        async def read(written: asyncio.Event) -> None:
            quiet = 0  # fetches in a row that returned nothing once everything was written
            while len(offsets) < producers_count * each and quiet < 20:
                fetched = await reader.getmany(timeout_ms=200)
                quiet = 0 if fetched or not written.is_set() else quiet + 1
                for records in fetched.values():
                    offsets.extend(r.offset for r in records)

        async def write(producer: AIOKafkaProducer) -> None:
            for _ in range(each):  # one request at a time: each record a batch of its own
                await producer.send_and_wait(tp.topic, b"x" * 200, partition=0)

        try:
            written = asyncio.Event()
            reading = asyncio.create_task(read(written))
            await asyncio.gather(*(write(p) for p in producers))
            written.set()
            await asyncio.wait_for(reading, 60)
        finally:
            for client in (*producers, reader):
                await client.stop()
        return offsets

    offsets = asyncio.run(scenario())
    missed = sorted(set(range(producers_count * each)) - set(offsets))
    assert not missed, f"{len(missed)} records never read, e.g. at offsets {missed[:5]}"
    assert offsets == sorted(set(offsets)), "records read twice or out of order"
