"""A weir server of a test module's own, fenced in so writes outside WEIR_HOME show.

It runs on the session's broker and Redis (a Redis database of its own) with
`weir up`'s code, in a folder holding three siblings: `home` (WEIR_HOME), `cwd`
(its working directory) and `tmp` (its TMPDIR), inherited by the workers it
starts. `written_outside` lists every file under that folder but outside `home`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from control.embedded import Service
from control.settings import Settings
from control.stack import down, up


@dataclass
class OwnServer:
    root: Path
    settings: Settings
    url: str

    @property
    def home(self) -> Path:
        return self.settings.home

    def token(self) -> str:
        """The token stack.json holds now (`weir token rotate` changes it)."""
        return str(json.loads(self.settings.stack_file.read_text())["token"])

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", **extra}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("timeout", 60)
        return httpx.request(
            method, f"{self.url}{path}", headers=self.headers(**kwargs.pop("headers", {})), **kwargs
        )

    def written_outside(self) -> list[str]:
        """Files under the fenced folder that are not under WEIR_HOME."""
        return sorted(
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if not p.is_dir() and self.home not in p.parents
        )

    def server_errors(self) -> list[str]:
        """Tracebacks the server logged (an unhandled error: a 500 somebody might not see)."""
        log = (self.home / "run" / "server.log").read_text(errors="replace")
        return [part[:2000] for part in log.split("Traceback")[1:]]


@contextmanager
def own_server(
    root: Path, kafka: Service, redis_service: Service, redis_db: int, **settings: Any
) -> Iterator[OwnServer]:
    """`weir up` (server only) on the session's broker and Redis database `redis_db`, emptied
    first: the Redis is the session's, shared by both brokers' legs of a module, and a server
    finding the other leg's deployments would try to resume them on its broker."""
    for part in ("home", "cwd", "tmp"):
        (root / part).mkdir()
    redis_url = redis_service.address.rsplit("/", 1)[0] + f"/{redis_db}"
    chosen = Settings(
        home=root / "home", kafka_bootstrap=kafka.address, redis_url=redis_url, **settings
    )
    with redis.Redis.from_url(redis_url) as fresh:
        fresh.flushdb()
    before, tmpdir = Path.cwd(), os.environ.get("TMPDIR")
    os.chdir(root / "cwd")
    os.environ["TMPDIR"] = str(root / "tmp")
    try:
        record = up(chosen, detach=True, say=lambda _: None)
    finally:
        os.chdir(before)
        if tmpdir is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = tmpdir
    try:
        yield OwnServer(root, chosen, record["server_url"])
    finally:
        down(chosen, say=lambda _: None)
