"""A lean HTTP/1.1 load client for the benches: keep-alive connections on raw asyncio streams.

httpx's async client spent ~3 ms of CPU per request on this 2-core machine (measured in
the MLServer study), more than the servers it measures; this one parses only the status
line and Content-Length. Latency is counted from when a request was due (open loop), so
time spent waiting for a free connection counts too; a request given a deadline
(weir's `?timeout=`) is sent with what is left of it, as a gRPC client propagates its own.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import numpy as np


@dataclass
class Outcomes:
    """What every request got: status (0: no answer in time, -1: connection failed) and
    seconds from when it was due to its answer."""

    status: list[int] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    bodies: list[bytes] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        status = np.asarray(self.status)
        ok = np.asarray(self.latency_s)[status == 200] * 1000
        refused = np.asarray(self.latency_s)[status == 503] * 1000
        out: dict[str, float | int] = {
            "sent": len(status),
            "ok": int((status == 200).sum()),
            "refused_503": int((status == 503).sum()),
            "failed": int(((status != 200) & (status != 503)).sum()),
            "ok_per_s": round(float((status == 200).sum()) / self.wall_s, 1) if self.wall_s else 0,
        }
        if len(ok):
            out.update(
                p50_ms=round(float(np.percentile(ok, 50)), 2),
                p99_ms=round(float(np.percentile(ok, 99)), 2),
                max_ms=round(float(ok.max()), 2),
            )
        if len(refused):
            out.update(
                refused_p99_ms=round(float(np.percentile(refused, 99)), 2),
                refused_max_ms=round(float(refused.max()), 2),
            )
        return out


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self._path, self._query = parts.path, parts.query
        lines = [f"Host: {self.host}:{self.port}", *(f"{k}: {v}" for k, v in headers.items())]
        self._headers = "\r\n".join(lines)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, query: str = "") -> tuple[int, bytes]:
        """Send `body`; `query` is added to the URL's own query string."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        query = "&".join(q for q in (self._query, query) if q)
        head = f"POST {self._path}{'?' + query if query else ''} HTTP/1.1\r\n{self._headers}"
        self._writer.write(f"{head}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self._reader.readexactly(length) if length else b""

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def sequential(
    url: str,
    headers: dict[str, str],
    bodies: list[bytes],
    warmup: int = 20,
    keep_bodies: bool = False,
) -> Outcomes:
    """Each body in turn on one connection (after `warmup` untimed requests)."""
    conn, out = Connection(url, headers), Outcomes()
    for body in bodies[:warmup]:
        await conn.post(body)
    start = time.perf_counter()
    for body in bodies[warmup:]:
        t0 = time.perf_counter()
        status, reply = await conn.post(body)
        out.status.append(status)
        out.latency_s.append(time.perf_counter() - t0)
        if keep_bodies:
            out.bodies.append(reply)
    out.wall_s = time.perf_counter() - start
    conn.close()
    return out


async def open_loop(
    url: str,
    headers: dict[str, str],
    body: bytes,
    rate: float,
    duration_s: float,
    connections: int,
    timeout_s: float,
    deadline_s: float | None = None,
) -> Outcomes:
    """`rate` requests/s for `duration_s`, each due at a fixed time whatever came back; a
    request still unanswered after `timeout_s` counts as status 0. With `deadline_s`, each
    request asks weir (`?timeout=`) to answer within what is left of its deadline once a
    connection is free: the server cannot see a queue in the client, and refuses at once
    what it cannot answer in that time (at least 1 ms is asked: weir reads 0 as no deadline
    given)."""
    total = int(rate * duration_s)
    due = [i / rate for i in range(total)]
    out = Outcomes(status=[0] * total, latency_s=[timeout_s] * total)
    next_index = 0
    start = time.perf_counter() + 0.05

    async def worker() -> None:
        nonlocal next_index
        conn = Connection(url, headers)
        while next_index < total:
            i = next_index
            next_index += 1
            wait = start + due[i] - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            query = ""
            if deadline_s is not None:
                left = deadline_s - (time.perf_counter() - start - due[i])
                query = f"timeout={max(left, 0.001):.3f}"
            try:
                status, _ = await asyncio.wait_for(conn.post(body, query), timeout_s)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                conn.close()
                status = 0 if time.perf_counter() - start - due[i] >= timeout_s else -1
            out.status[i] = status
            out.latency_s[i] = time.perf_counter() - start - due[i]
        conn.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    out.wall_s = time.perf_counter() - start
    return out
