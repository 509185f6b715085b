"""The chaos harness's load: numbered records on a pipeline's input topic and HTTP requests,
and everything that comes back, kept so a run can say what was lost, repeated or wrong."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from control.settings import Settings
from engine import codecs
from streams.aiokafka_internals import topic_partitions
from streams.messages import CONTENT_TYPE, REQUEST_ID, Envelope
from tests.integration._streams import first_value, numbered_row

KAFKA_PREFIX = "k-"
HTTP_EVERY_S = 0.2
CLEAR_HTTP_ERRORS = {503, 504}
"""What an HTTP caller may get while a fault lasts: "unavailable, try again", "timed out"."""


@dataclass
class Seen:
    """One answer on the result topic."""

    at_s: float
    version: str | None
    redelivered: bool
    value: float | None  # None: an error reply


class Load:
    """Sends numbered records (`rate` a second) and HTTP requests (every HTTP_EVERY_S) until
    `stop_sending()`, and reads the result topic from its start."""

    def __init__(
        self,
        bootstrap: str,
        topics: dict[str, str],
        settings: Settings,
        pipeline: str,
        *,
        rate: float,
        idempotent: bool,
    ) -> None:
        self._bootstrap, self._topics, self._rate = bootstrap, topics, rate
        # Exactly once is checked end to end: the input must hold each record once, even
        # when a send is retried across a broker restart (Tansu has no idempotent producer).
        self._idempotent = idempotent
        self._url = f"http://{settings.http_host}:{settings.http_port}/pipelines/{pipeline}"
        self._headers = {
            "Authorization": f"Bearer {settings.token}",
            "content-type": codecs.ARROW_STREAM,
        }
        self.t0 = time.monotonic()
        self.sent: dict[int, tuple[int, float]] = {}  # number -> (partition, sent at)
        self.refused = 0  # records the producer could not send (the broker was away)
        self.answers: dict[int, list[Seen]] = defaultdict(list)
        self.http: list[tuple[float, int | str, bool]] = []  # (at, status or error, value ok)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._reader = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            isolation_level="read_committed",
        )

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def start(self) -> None:
        await self._reader.start()
        partitions = await topic_partitions(self._reader, self._topics["output"])
        self._reader.assign(partitions)
        await self._reader.seek_to_beginning(*partitions)
        self._tasks = [
            asyncio.create_task(work()) for work in (self._read, self._produce, self._call_http)
        ]

    def stop_sending(self) -> None:
        self._stop.set()

    async def finish(self, wait_s: float) -> None:
        """Wait until every record sent is answered (or `wait_s` passes), then a little more
        for repeats to show."""
        await asyncio.gather(*self._tasks[1:])
        deadline = time.monotonic() + wait_s
        while self.sent.keys() - self.answers.keys() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        await asyncio.sleep(2)

    async def stop(self) -> None:
        self._stop.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._reader.stop()

    # -- the three tasks ---------------------------------------------------------------
    async def _produce(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap, linger_ms=5, enable_idempotence=self._idempotent
        )
        await producer.start()
        pending: list[asyncio.Future[Any]] = []
        try:
            n = 0
            while not self._stop.is_set():
                try:
                    future = await producer.send(
                        self._topics["input"],
                        numbered_row(n),
                        key=str(n).encode(),
                        headers=[
                            (CONTENT_TYPE, codecs.ARROW_STREAM.encode()),
                            (REQUEST_ID, f"{KAFKA_PREFIX}{n}".encode()),
                        ],
                    )
                    future.add_done_callback(self._acked(n, self.now()))
                    pending.append(future)
                except Exception:  # noqa: BLE001 - not accepted: not expected back
                    self.refused += 1
                n += 1
                await asyncio.sleep(max(0.0, n / self._rate - self.now()))
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            await producer.stop()

    def _acked(self, n: int, at: float) -> Any:
        def done(future: asyncio.Future[Any]) -> None:
            if future.cancelled() or future.exception() is not None:
                self.refused += 1
            else:
                self.sent[n] = (future.result().partition, at)

        return done

    async def _read(self) -> None:
        while True:
            for msgs in (await self._reader.getmany(timeout_ms=200)).values():
                for msg in msgs:
                    env = Envelope.parse(msg.headers)
                    if not env.request_id.startswith(KAFKA_PREFIX):
                        continue
                    value = None
                    if env.error is None and msg.value:
                        value = first_value(codecs.decode(msg.value, codecs.ARROW_STREAM))
                    self.answers[int(env.request_id[len(KAFKA_PREFIX) :])].append(
                        Seen(self.now(), env.version, env.redelivered, value)
                    )

    async def _call_http(self) -> None:
        async with httpx.AsyncClient(timeout=30) as http:
            n = 10_000_000
            while not self._stop.is_set():
                n += 1
                at = self.now()
                try:
                    response = await http.post(
                        self._url, content=numbered_row(n), headers=self._headers
                    )
                    ok = (
                        response.status_code == 200
                        and first_value(codecs.decode(response.content, codecs.ARROW_STREAM)) == n
                    )
                    self.http.append((at, response.status_code, ok))
                except httpx.HTTPError as exc:
                    self.http.append((at, type(exc).__name__, False))
                await asyncio.sleep(HTTP_EVERY_S)

    # -- what it saw ---------------------------------------------------------------------
    def summary(
        self, *, kafka_broker: bool, versions: set[str], kills: list[float]
    ) -> dict[str, Any]:
        answered = self.sent.keys() & self.answers.keys()
        repeated = {n: seen for n, seen in self.answers.items() if len(seen) > 1}
        statuses = Counter(str(status) for _, status, _ in self.http)
        return {
            "sent": len(self.sent),
            "refused_by_broker": self.refused,
            "answered": len(answered),
            "lost": _sample(self.sent.keys() - self.answers.keys()),
            "wrong": _sample(
                n
                for n, seen in self.answers.items()
                if any(s.value is not None and s.value != n for s in seen)
            ),
            "errors": _sample(
                n for n, seen in self.answers.items() if any(s.value is None for s in seen)
            ),
            "repeated": len(repeated),
            "repeats_exactly_once": _sample(repeated) if kafka_broker else [],
            "unmarked_repeats": _sample(
                n for n, seen in repeated.items() if not all(s.redelivered for s in seen[1:])
            ),
            "unknown_versions": sorted(
                {s.version for seen in self.answers.values() for s in seen} - versions - {None}
            ),
            "http": dict(statuses),
            "http_server_errors": {
                k: v
                for k, v in statuses.items()
                if k.isdigit() and k != "200" and int(k) not in CLEAR_HTTP_ERRORS
            },
            "http_wrong": sum(1 for _, status, ok in self.http if status == 200 and not ok),
            "kill_recovery_s": [self._recovery(at) for at in kills],
        }

    def _recovery(self, killed_at: float) -> float | None:
        """Seconds from a kill until every partition answers again: the first answer to a
        record sent after the kill, on each partition, at its latest."""
        first: dict[int, float] = {}
        for n, (partition, at) in self.sent.items():
            if at > killed_at and self.answers.get(n):
                arrival = self.answers[n][0].at_s
                first[partition] = min(first.get(partition, arrival), arrival)
        return round(max(first.values()) - killed_at, 2) if first else None

    def log_row_problems(self, pipeline: Any, wait_s: float = 60) -> dict[str, Any]:
        """Answered records without exactly one log row (waiting for the log agent)."""
        answered = {f"{KAFKA_PREFIX}{n}" for n in self.sent.keys() & self.answers.keys()}
        deadline = time.monotonic() + wait_s
        while True:
            logs = pipeline.logs(limit=10 * len(self.answers) + 1000)
            counts = Counter(r for r in logs["request_id"] if r.startswith(KAFKA_PREFIX))
            missing = answered - counts.keys()
            if not missing or time.monotonic() > deadline:
                doubled = [r for r, c in counts.items() if c > 1]
                return (
                    {"missing": _sample(missing), "doubled": _sample(doubled)}
                    if missing or doubled
                    else {}
                )
            time.sleep(1)


def _sample(found: Any, show: int = 10) -> list[Any]:
    """The first few of `found` and how many in all (empty when none)."""
    items = sorted(found)
    return [*items[:show], f"... {len(items)} in all"] if len(items) > show else items
