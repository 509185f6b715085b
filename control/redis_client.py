"""The registry's Redis client: it fails fast, and says so, while Redis is away.

With Redis away, a call raises `RegistryUnavailable` (HTTP 503) within a few seconds
(REDIS_TIMEOUT_S), not redis-py's own errors after its retries. From then on calls fail at
once (the server's event loop and a worker's heartbeats do not wait on a Redis that does not
answer) while a thread pings Redis every REDIS_PROBE_S; once it answers, calls go through
again (the client reconnects by itself).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from control.credentials import redact_url
from control.errors import RegistryUnavailable

REDIS_TIMEOUT_S = 2.0
"""How long connecting to Redis, or one reply, may take (tried twice: once more on a fresh
connection, as after Redis restarted): with Redis away a call fails in seconds, not a hang."""
REDIS_PROBE_S = 0.5
"""While Redis is away, how often it is pinged to see whether it is back."""
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)
"""redis-py's errors for a Redis that does not answer."""


def connect(url: str) -> RedisClient:
    """A client of the Redis at `url` (replies decoded as text)."""
    client = RedisClient.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 1),
    )
    assert isinstance(client, RedisClient)  # from_url builds `cls`; redis-py types it as Redis
    client.shown_url = redact_url(url)
    return client


class RedisClient(redis.Redis):
    """A Redis client whose connection failures raise RegistryUnavailable: the first after
    its timeouts, the next ones at once until a ping from a thread of its own succeeds."""

    shown_url = ""
    """The URL named in the error (without its password)."""
    _away: str | None = None
    """Why Redis is taken to be away (None: it is not)."""
    _watch_lock = threading.Lock()

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.check()
        try:
            return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]  # untyped in redis-py
        except UNREACHABLE as exc:
            raise self.went_away(exc) from exc

    def members(self, key: str) -> list[str]:
        """The members of the set at `key`, sorted (text: the client decodes replies)."""
        return sorted(m if isinstance(m, str) else m.decode() for m in self.smembers(key))

    def check(self) -> None:
        """Raise RegistryUnavailable at once while Redis is taken to be away."""
        away = self._away
        if away is not None:
            raise RegistryUnavailable(self.shown_url, away)

    def went_away(self, exc: Exception) -> RegistryUnavailable:
        """Take Redis to be away (until a ping answers); returns the error to raise."""
        with self._watch_lock:
            watching, self._away = self._away is not None, str(exc)
        if not watching:
            threading.Thread(target=self._watch, name="weir-redis-watch", daemon=True).start()
        return RegistryUnavailable(self.shown_url, str(exc))

    def _watch(self) -> None:
        while True:
            time.sleep(REDIS_PROBE_S)
            try:
                super().execute_command("PING")  # type: ignore[no-untyped-call]  # as above
            except UNREACHABLE as exc:
                self._away = str(exc)
                continue
            with self._watch_lock:
                self._away = None
            return
