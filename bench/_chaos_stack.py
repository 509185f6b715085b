"""The chaos harness's stack: a broker, Redis and weir server of its own, each of which can be
killed or stopped and started again on the same ports and data, as an operator would."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from bench._brokers import Broker
from control import embedded
from control.apache_kafka.broker import start_kafka
from control.embedded import Service, free_port, start_redis
from control.sdk.client import Client
from control.settings import Settings
from control.stack import down, read_stack, up


class ChaosStack:
    """A whole weir stack under `root`; `kill_server`, `restart_redis` and `restart_broker`
    bring each part down and up again where its clients expect it.

    Example:
        stack = ChaosStack(root, "kafka")
        stack.start()
        stack.kill_server(); stack.start_server()
        stack.stop()
    """

    def __init__(self, root: Path, broker: Broker) -> None:
        self.root = root
        self.kind = broker
        self.broker: Service | None = None
        self.redis: Service | None = None
        self._ports = {
            "broker": free_port(),
            "controller": free_port(),
            "redis": free_port(),
            "http": free_port(),
        }
        self.settings = Settings(
            home=root / "home",
            kafka_bootstrap=f"127.0.0.1:{self._ports['broker']}",
            redis_url=f"redis://127.0.0.1:{self._ports['redis']}/0",
            http_port=self._ports["http"],
            token="chaos-token",
        )

    @property
    def bootstrap(self) -> str:
        return str(self.settings.kafka_bootstrap)

    def client(self) -> Client:
        return Client(
            f"http://{self.settings.http_host}:{self._ports['http']}",
            str(self.settings.token),
            settings=self.settings,
        )

    def start(self) -> None:
        self.start_broker()
        self.start_redis()
        self.start_server()

    def stop(self) -> None:
        down(self.settings, say=lambda _: None)
        for service in (self.redis, self.broker):
            if service is not None:
                service.stop()

    # -- the server -----------------------------------------------------------------
    def server_pid(self) -> int | None:
        stack = read_stack(self.settings)
        return int(stack["pids"]["server"]) if stack else None

    def start_server(self) -> None:
        up(self.settings, detach=True, say=lambda _: None)

    def kill_server(self) -> None:
        pid = self.server_pid()
        if pid is not None:
            _kill_and_reap(pid)

    # -- Redis and the broker ---------------------------------------------------------
    def start_redis(self) -> None:
        folder = self.root / "redis"
        folder.mkdir(exist_ok=True)
        self.redis = start_redis(folder, port=self._ports["redis"])

    def stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()

    def start_broker(self) -> None:
        folder = self.root / "broker"
        folder.mkdir(exist_ok=True)
        if self.kind == "kafka":
            self.broker = start_kafka(
                folder / "data",
                folder,
                self.settings.cache,
                say=lambda _: None,
                port=self._ports["broker"],
                controller_port=self._ports["controller"],
            )
        else:  # Tansu keeps its data in memory: it is never restarted here
            self.broker = embedded.start_broker(folder, port=self._ports["broker"])

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.broker.stop(timeout=30)


def _kill_and_reap(pid: int) -> None:
    """SIGKILL `pid` and wait until it is gone (reaped, if it is our child)."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.02)


def worker_pids(home: Path) -> list[int]:
    """Live worker processes started for the stack in `home` (by any server of it)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (
            b"control.worker_main" in cmdline
            and state != "Z"
            and f"WEIR_HOME={home}".encode() in environ.split(b"\0")
        ):
            found.append(int(proc.name))
    return found


def resident_bytes(pid: int) -> int | None:
    """The resident memory of `pid` now, or None if it is gone."""
    try:
        return int((Path(f"/proc/{pid}/statm")).read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError):
        return None
