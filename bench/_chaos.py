"""The chaos harness: numbered load through a pipeline's Kafka input topic and HTTP endpoint
while a seeded schedule of faults, several close together, hits the stack; then what must hold.

`run_chaos(root, broker, seed, seconds)` returns a report: the faults applied (and what the
user saw of each), records sent/answered/repeated/lost, recovery times, memory, and
`problems`, the list of broken guarantees (empty when everything held). The same seed gives
the same schedule, so a failing run can be replayed. bench/chaos.py runs it for as long as
asked; tests/integration/test_chaos.py runs one fixed seed on each broker.
"""

from __future__ import annotations

import asyncio
import random
import signal
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench._brokers import Broker
from bench._chaos_load import Load
from bench._chaos_stack import ChaosStack, resident_bytes, worker_pids
from control.demo.models import diabetes_regressor
from control import DeploymentConfigBuilder
from control.errors import StackError
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from streams.admin import topic_names
from streams.topics import TopicMap

PIPELINE = "chaos"
SETTLE_S = 60.0
"""After the schedule, the pipeline is Running again within this long."""
ANSWER_WAIT_S = 90.0
"""...and every accepted record is answered within this long after that."""
SERVER_RESTART_S = 60.0
"""How long a killed server is started again for (`weir up` refuses while the broker is away)."""
MEMORY_LIMIT_BYTES = 1536 * 2**20
"""No server or worker process may grow past this (a leak shows long before)."""

FAULTS = {
    "swap": "hot swap the model of the last step",
    "replicas": "redeploy with the other replica count (1 or 2)",
    "step": "add a Python step before the model, or remove it",
    "shadow": "add a shadow challenger, or remove it",
    "config": "redeploy the same steps with another memory limit (config only)",
    "sidekick": "run the Python step (adding it if missing) as a sidekick, or in the main "
    "workers again",
    "kill_worker": "SIGKILL a main worker",
    "pause_worker": "SIGSTOP a worker for 1-6 s, then SIGCONT",
    "kill_shadow": "SIGKILL a shadow worker (a main one if none)",
    "kill_sidekick": "SIGKILL a sidekick worker (a main one if none)",
    "kill_server": "SIGKILL `weir serve`, start it again 1-3 s later",
    "restart_redis": "stop Redis, start it again 1-4 s later",
    "restart_broker": "stop Apache Kafka, start it again (Kafka only)",
}
DEPLOYS = ("swap", "replicas", "step", "shadow", "config", "sidekick")
PRE_STEP = """
def process_data(input_data):
    return {"float_input": input_data["tensor"]}
"""


@dataclass
class Fault:
    at_s: float
    kind: str
    outcome: str = ""
    """What a user saw: "ok", or the error they got (a refused deploy says why)."""
    started_s: float | None = None
    took_s: float | None = None


def schedule(
    seed: int, seconds: float, broker: Broker, kinds: Sequence[str] = tuple(FAULTS), burst: int = 3
) -> list[Fault]:
    """Bursts of one to `burst` faults (of `kinds`) 0.5-3 s apart, a burst every 5-12 s, from
    `seed`."""
    rng = random.Random(seed)
    kinds = [k for k in kinds if broker == "kafka" or k != "restart_broker"]
    faults, t = [], 5.0
    while t < seconds:
        for _ in range(rng.randint(1, burst)):
            faults.append(Fault(round(t, 1), rng.choice(kinds)))
            t += rng.uniform(0.5, 3.0)
        t += rng.uniform(5.0, 12.0)
    return [f for f in faults if f.at_s < seconds]


@dataclass
class Shape:
    """What the harness last asked to deploy."""

    model: int = 0
    replicas: int = 2
    pre_step: bool = False
    shadow: bool = False
    sidekick: bool = False
    """The Python step runs as a sidekick (only while there is one)."""
    memory: str = "1Gi"


@dataclass
class Chaos:
    stack: ChaosStack
    pipeline: Pipeline
    models: dict[str, Model]
    rng: random.Random
    shape: Shape = field(default_factory=Shape)
    versions: set[str] = field(default_factory=set)
    deploying: asyncio.Lock = field(default_factory=asyncio.Lock)
    restarting: defaultdict[str, asyncio.Lock] = field(
        default_factory=lambda: defaultdict(asyncio.Lock)
    )
    """A service's restart waits for one already under way, as an operator's would: two
    brokers started at once on the same data (two restarts a few seconds apart) broke its
    metadata log, and the run hung with no broker."""
    pauses: list[asyncio.Task[None]] = field(default_factory=list)

    async def apply(self, fault: Fault, t0: float) -> None:
        fault.started_s = round(time.monotonic() - t0, 2)
        started = time.monotonic()
        try:
            if fault.kind in DEPLOYS:
                await self._redeploy(fault.kind)
            else:
                await getattr(self, f"_{fault.kind}")()
            fault.outcome = fault.outcome or "ok"
        except Exception as exc:  # noqa: BLE001 - what the user saw is the finding
            fault.outcome = f"{type(exc).__name__}: {exc}"[:500]
        fault.took_s = round(time.monotonic() - started, 2)

    async def _redeploy(self, kind: str) -> None:
        async with self.deploying:
            s = self.shape
            if kind == "swap":
                s.model = (s.model + 1) % 3
            elif kind == "replicas":
                s.replicas = 3 - s.replicas
            elif kind == "step":
                s.pre_step = not s.pre_step
            elif kind == "shadow":
                s.shadow = not s.shadow
            elif kind == "sidekick":
                s.sidekick = not s.sidekick
                s.pre_step = s.pre_step or s.sidekick
            else:
                s.memory = "1024Mi" if s.memory == "1Gi" else "1Gi"
            await asyncio.to_thread(self.deploy)

    def deploy(self) -> None:
        s, pipeline = self.shape, self.pipeline.clear()
        if s.pre_step:
            pipeline.add_model_step(self.models["pre"])
        champion = self.models[f"ridge{s.model}"]
        if s.shadow:
            pipeline.add_shadow_deploy(champion, [self.models[f"ridge{(s.model + 1) % 3}"]])
        else:
            pipeline.add_model_step(champion)
        self.versions.add(pipeline.create_version().version)
        config = DeploymentConfigBuilder().replica_count(s.replicas).memory(s.memory)
        if s.sidekick and s.pre_step:
            config.sidekick_replica_count(self.models["pre"], 1)
        pipeline.deploy(config.build(), quiet=True)

    async def _engine_pid(self, role: str) -> int:
        status = await asyncio.to_thread(self.pipeline.status)
        engines = [
            e
            for e in [*status.get("engines", []), *status.get("sidekicks", [])]
            if e.get("pid") and e["role"] == role
        ]
        if not engines:
            raise LookupError(f"no {role} worker to hit (status {status.get('status')!r})")
        return int(self.rng.choice(engines)["pid"])

    async def _kill_worker(self, role: str = "main") -> None:
        signal_pid(await self._engine_pid(role), signal.SIGKILL)

    async def _kill_shadow(self) -> None:
        try:
            await self._kill_worker("shadow")
        except LookupError:
            await self._kill_worker("main")

    async def _kill_sidekick(self) -> None:
        try:
            await self._kill_worker("sidekick")
        except LookupError:
            await self._kill_worker("main")

    async def _pause_worker(self) -> None:
        pid = await self._engine_pid(
            self.rng.choice(["main", "main", "shadow"]) if self.shape.shadow else "main"
        )
        pause_s = self.rng.uniform(1.0, 6.0)
        signal_pid(pid, signal.SIGSTOP)

        async def resume() -> None:
            await asyncio.sleep(pause_s)
            signal_pid(pid, signal.SIGCONT)

        self.pauses.append(asyncio.create_task(resume()))

    async def _kill_server(self) -> None:
        await asyncio.to_thread(self.stack.kill_server)
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))
        # As an operator (or systemd) would: `weir up` again until it starts. It refuses
        # while the broker is away, e.g. restarted by a fault close by.
        deadline = time.monotonic() + SERVER_RESTART_S
        while True:
            try:
                await asyncio.to_thread(self.stack.start_server)
                return
            except StackError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)

    async def _restart_redis(self) -> None:
        async with self.restarting["redis"]:
            await asyncio.to_thread(self.stack.stop_redis)
            await asyncio.sleep(self.rng.uniform(1.0, 4.0))
            await asyncio.to_thread(self.stack.start_redis)

    async def _restart_broker(self) -> None:
        async with self.restarting["broker"]:
            await asyncio.to_thread(self.stack.stop_broker)
            await asyncio.to_thread(self.stack.start_broker)


def signal_pid(pid: int, sig: signal.Signals) -> None:
    import os

    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def upload_models(chaos_dir: Path, client: Any) -> dict[str, Model]:
    pre = chaos_dir / "chaos_pre.py"
    pre.write_text(PRE_STEP)
    models = {"pre": client.upload_model("chaos-pre", pre).configure("python")}
    for n in range(3):  # the same regressor, three uploads: three models to swap between
        path = diabetes_regressor(chaos_dir / f"ridge{n}.onnx")
        models[f"ridge{n}"] = client.upload_model(f"chaos-ridge{n}", path).configure("onnx")
    return models


async def _drive(
    stack: ChaosStack, faults: list[Fault], seed: int, rate: float, report: dict[str, Any]
) -> None:
    client = stack.client()
    models = await asyncio.to_thread(upload_models, stack.root, client)
    pipeline = client.build_pipeline(PIPELINE)
    chaos = Chaos(stack, pipeline, models, random.Random(seed + 1))
    await asyncio.to_thread(chaos.deploy)
    topics = await asyncio.to_thread(pipeline.topics)
    load = Load(
        stack.bootstrap,
        topics,
        stack.settings,
        PIPELINE,
        rate=rate,
        idempotent=stack.kind == "kafka",
    )
    memory: dict[str, int] = {}
    sampling = asyncio.create_task(_sample_memory(stack, memory))
    await load.start()
    t0 = time.monotonic()
    load.t0 = t0
    try:
        tasks = []
        for fault in faults:
            await asyncio.sleep(max(0.0, t0 + fault.at_s - time.monotonic()))
            tasks.append(asyncio.create_task(chaos.apply(fault, t0)))
        await asyncio.gather(*tasks)
        await asyncio.gather(*chaos.pauses)
        await asyncio.sleep(2)
        load.stop_sending()
        report["settle_s"] = await _settle(pipeline)
        await load.finish(ANSWER_WAIT_S)
    finally:
        await load.stop()
        sampling.cancel()
    report["versions"] = sorted(chaos.versions)
    report.update(
        load.summary(
            kafka_broker=stack.kind == "kafka",
            versions=chaos.versions,
            kills=[
                f.started_s
                for f in faults
                if f.kind == "kill_worker" and f.outcome == "ok" and f.started_s is not None
            ],
        )
    )
    report["log_rows"] = await asyncio.to_thread(load.log_row_problems, pipeline)
    await asyncio.to_thread(pipeline.undeploy)
    report["leftovers"] = await _leftovers(stack)
    report["memory_max_bytes"] = memory


async def _settle(pipeline: Pipeline) -> float | None:
    """Seconds until status() says Running (None: not within SETTLE_S)."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_S:
        try:
            if (await asyncio.to_thread(pipeline.status)).get("status") == "Running":
                return round(time.monotonic() - started, 2)
        except Exception:  # noqa: BLE001 - the server may still be coming back
            pass
        await asyncio.sleep(0.5)
    return None


async def _sample_memory(stack: ChaosStack, memory: dict[str, int]) -> None:
    while True:
        pids = {"server": stack.server_pid()}
        pids |= {f"worker {pid}": pid for pid in worker_pids(stack.settings.home)}
        for name, pid in pids.items():
            rss = resident_bytes(pid) if pid else None
            if rss is not None:
                memory[name] = max(memory.get(name, 0), rss)
        await asyncio.sleep(2)


async def _leftovers(stack: ChaosStack) -> dict[str, list[Any]]:
    """Worker processes and deployment topics still there 30 s after the undeploy."""
    topics = TopicMap.load()
    deadline = time.monotonic() + 30
    while True:
        workers = worker_pids(stack.settings.home)
        names = await topic_names(stack.settings.worker_settings())
        own = [t for t in names if (topics.deployment_of(t) or ("", ""))[1] == PIPELINE]
        if (not workers and not own) or time.monotonic() > deadline:
            return {"workers": workers, "topics": own}
        await asyncio.sleep(1)


def problems(report: dict[str, Any]) -> list[str]:
    """Each guarantee the run broke, in words."""
    found = []
    if report.get("settle_s") is None:
        found.append(f"status() not Running within {SETTLE_S:.0f}s of the last fault")
    for key in (
        "lost",
        "wrong",
        "errors",
        "unmarked_repeats",
        "repeats_exactly_once",
        "unknown_versions",
        "http_server_errors",
        "http_wrong",
    ):
        if report.get(key):
            found.append(f"{key}: {report[key]}")
    if report.get("log_rows"):
        found.append(f"log rows: {report['log_rows']}")
    if any(report.get("leftovers", {}).values()):
        found.append(f"left after undeploy: {report['leftovers']}")
    over = {k: v for k, v in report.get("memory_max_bytes", {}).items() if v > MEMORY_LIMIT_BYTES}
    if over:
        found.append(f"memory over {MEMORY_LIMIT_BYTES >> 20} MiB: {over}")
    return found


def run_chaos(
    root: Path,
    broker: Broker,
    *,
    seed: int,
    seconds: float,
    rate: float = 100.0,
    kinds: Sequence[str] = tuple(FAULTS),
    burst: int = 3,
) -> dict[str, Any]:
    """One chaos run in `root` (a fresh stack) with faults of `kinds`, up to `burst` close
    together; the report, `problems` included."""
    faults = schedule(seed, seconds, broker, kinds, burst)
    report: dict[str, Any] = {"broker": broker, "seed": seed, "seconds": seconds, "rate": rate}
    stack = ChaosStack(root, broker)
    stack.start()
    try:
        asyncio.run(_drive(stack, faults, seed, rate, report))
    finally:
        report["faults"] = [asdict(f) for f in faults]
        stack.stop()
    report["problems"] = problems(report)
    if report["problems"]:
        report["server_said"] = server_said(stack)
    return report


def server_said(stack: ChaosStack, lines: int = 60) -> list[str]:
    """The last lines of the server's log (its warnings and errors: the server logs no
    INFO), each cut to 300 characters: what a failed run's report shows of the why."""
    log = stack.settings.home / "run" / "server.log"
    said = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line[:300] for line in said[-lines:]]


def recovery_summary(times: list[float]) -> dict[str, float | None]:
    return {
        "count": len(times),
        "p50_s": round(statistics.median(times), 2) if times else None,
        "max_s": round(max(times), 2) if times else None,
    }
