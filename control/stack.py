"""`weir up` / `weir down`: the local stack of broker, Redis and server.

`up` starts what the settings do not point at elsewhere (a broker unless
WEIR_KAFKA_BOOTSTRAP is set: Tansu, or Apache Kafka with WEIR_BROKER=kafka;
redis-server unless WEIR_REDIS_URL is set), then
the server, and writes WEIR_HOME/stack.json (owner-only) so the CLI and
`Client()` find it. A second `up` on a running home says so and starts nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from control.apache_kafka.broker import start_kafka
from control.credentials import check_private, redact_url, write_private
from control.embedded import (
    Service,
    free_port,
    start_broker,
    start_redis,
    stop_process,
    wait_for_port,
)
from control.errors import StackError
from control.settings import Settings
from control.worker_processes import terminate_recorded
from streams.admin import check_connection
from streams.errors import KafkaUnreachable


def read_stack(settings: Settings) -> dict[str, Any] | None:
    try:
        return dict(json.loads(settings.stack_file.read_text()))
    except (FileNotFoundError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    """Whether a process `pid` exists (ours to signal or not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_running(stack: dict[str, Any]) -> bool:
    try:
        return httpx.get(f"{stack['server_url']}/healthz", timeout=2).status_code == 200
    except (httpx.HTTPError, KeyError):
        return False


def _write_stack(settings: Settings, stack: dict[str, Any]) -> None:
    write_private(settings.stack_file, json.dumps(stack, indent=2))


def up(settings: Settings, *, detach: bool, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Start the stack; returns the stack record. With detach=False, blocks until stopped."""
    settings.home.mkdir(parents=True, exist_ok=True)
    run_dir = settings.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(settings.home / "stack.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StackError(f"another `weir up` is starting in {settings.home}") from None
    if settings.stack_file.exists():
        check_private(settings.stack_file)
    existing = read_stack(settings)
    if existing and is_running(existing):
        say(f"weir is already running in {settings.home} at {existing['server_url']}")
        return existing
    started: list[subprocess.Popen[bytes]] = []
    stack: dict[str, Any] = {"home": str(settings.home), "pids": {}}
    try:
        kafka = settings.kafka_bootstrap
        if not kafka:
            broker = _start_broker(settings, detach=detach, say=say)
            started.append(broker.proc)
            kafka = broker.address
            stack["pids"]["kafka"] = broker.proc.pid
            stack["broker"] = settings.broker
        else:  # someone else's broker: a wrong address or password fails now, clearly
            try:
                asyncio.run(check_connection(settings.worker_settings()))
            except KafkaUnreachable as exc:
                raise StackError(str(exc)) from exc
        redis_url = settings.redis_url
        if not redis_url:
            redis = start_redis(settings.home / "redis", detach=detach)
            started.append(redis.proc)
            redis_url = redis.address
            stack["pids"]["redis"] = redis.proc.pid
        port = settings.http_port or free_port()
        token = settings.token or secrets.token_urlsafe(32)
        chosen = {
            f"WEIR_{k.upper()}": str(v)
            for k, v in settings.model_dump(exclude_unset=True, exclude_none=True).items()
        }
        env = {
            **os.environ,
            **chosen,
            "WEIR_HOME": str(settings.home),
            "WEIR_KAFKA_BOOTSTRAP": kafka,
            "WEIR_REDIS_URL": redis_url,
            "WEIR_TOKEN": token,
            "WEIR_HTTP_PORT": str(port),
            "WEIR_HTTP_HOST": settings.http_host,
        }
        with open(run_dir / "server.log", "ab") as log:
            server = subprocess.Popen(
                [sys.executable, "-m", "control.cli", "serve"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=detach,
            )
        started.append(server)
        stack["pids"]["server"] = server.pid
        wait_for_port(port, server, "the weir server", timeout=60)
        server_url = f"http://{settings.http_host}:{port}"
        _wait_ready(server_url, server)
        stack.update(
            server_url=server_url,
            kafka_bootstrap=kafka,
            redis_url=redis_url,
            token=token,
            started=time.time(),
        )
        _write_stack(settings, stack)
    except BaseException:
        for proc in reversed(started):
            stop_process(proc)
        raise
    say(
        f"weir is up at {stack['server_url']} (kafka {kafka}, redis {redact_url(redis_url)}); "
        f"stack file {settings.stack_file}"
    )
    if detach:
        return stack
    say("press Ctrl-C to stop")
    try:
        signal.signal(signal.SIGTERM, _interrupt)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        down(settings, say=say)
    return stack


def _start_broker(settings: Settings, *, detach: bool, say: Callable[[str], None]) -> Service:
    """The embedded broker `settings.broker` names."""
    if settings.broker == "kafka":
        return start_kafka(
            settings.home / "kafka", settings.run_dir, settings.cache, detach=detach, say=say
        )
    return start_broker(settings.run_dir, detach=detach)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _wait_ready(server_url: str, server: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise StackError(f"the weir server exited with {server.returncode}; see run/server.log")
        try:
            if httpx.get(f"{server_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise StackError(f"the weir server at {server_url} was not ready within {timeout:.0f}s")


def down(settings: Settings, *, say: Callable[[str], None] = print) -> bool:
    """Stop what `up` started (server first, so it stops its workers; then any worker a killed
    server left running, while the broker and Redis are still there for it to drain).
    False if nothing ran."""
    stack = read_stack(settings)
    if not stack:
        say(f"weir is not running in {settings.home}")
        return False
    for role in ("server", "redis", "kafka"):
        pid = stack.get("pids", {}).get(role)
        if pid and process_alive(pid):
            _terminate_pid(pid)
        if role == "server":
            left = terminate_recorded(settings)
            if left:
                say(f"stopped {len(left)} worker(s) the server had left running")
    settings.stack_file.unlink(missing_ok=True)
    say("weir is down")
    return True


def _terminate_pid(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM a process that may not be our child; SIGKILL if it lingers."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return
        except ChildProcessError:
            if not process_alive(pid):
                return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
