"""The benches' HTTP load client (bench/_http_load.py): an open-loop request given a deadline
asks the server for what is left of it once a connection is free, so a queue in the client
is not hidden from the server."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

from bench._http_load import open_loop

SERVER_DELAY_S = 0.05


async def load_through_one_slow_connection(deadline_s: float | None) -> list[str]:
    """Six requests due at once through one connection to a server that takes 50 ms each;
    the request targets the server saw."""
    targets: list[str] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            targets.append(head.split(b" ")[1].decode())
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            await asyncio.sleep(SERVER_DELAY_S)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        out = await open_loop(
            f"http://127.0.0.1:{port}/pipelines/p?workspace=w",
            {},
            b"body",
            rate=1000.0,
            duration_s=0.006,
            connections=1,
            timeout_s=5.0,
            deadline_s=deadline_s,
        )
    assert out.status == [200] * 6
    return targets


def test_each_request_asks_for_what_is_left_of_its_deadline() -> None:
    targets = asyncio.run(load_through_one_slow_connection(deadline_s=0.2))
    queries = [parse_qs(urlsplit(t).query) for t in targets]
    assert all(q["workspace"] == ["w"] for q in queries)  # the URL's own query is kept
    left = [float(q["timeout"][0]) for q in queries]
    assert left[0] > 0.15
    # each waited ~50 ms longer for the connection than the one before it
    in_time = [seconds for seconds in left if seconds > 0.001]
    assert len(in_time) >= 4
    assert all(later < earlier - 0.03 for earlier, later in zip(in_time, in_time[1:]))
    assert left[-1] == 0.001  # past its deadline: the server is asked to refuse it


def test_without_a_deadline_the_url_is_sent_as_given() -> None:
    targets = asyncio.run(load_through_one_slow_connection(deadline_s=None))
    assert targets == ["/pipelines/p?workspace=w"] * 6
