"""bench_pipeline's pipelines on a stack: models uploaded, deployed with one worker (a
sidekick with a CPU of its own), and their processes: waited for once undeployed, and the
memory one holds."""

from __future__ import annotations

import time
from pathlib import Path

from control.records import DeploymentConfig
from control.sdk.client import Client
from control.sdk.config import DeploymentConfigBuilder
from control.sdk.model import Model
from control.sdk.pipeline import Pipeline
from control.stack import process_alive


def upload(client: Client, steps: dict[str, Path]) -> list[Model]:
    return [client.upload_model(name, path).configure("onnx") for name, path in steps.items()]


def deploy(
    client: Client, name: str, models: list[Model], *, sidekick: str | None = None
) -> Pipeline:
    """`models` in order as pipeline `name`, deployed with one worker (and the model named
    `sidekick`, if any, as a sidekick with one CPU of its own)."""
    builder = client.build_pipeline(name)
    for model in models:
        builder.add_model_step(model)
    config = (
        DeploymentConfigBuilder().sidekick_cpus(sidekick, 1).build()
        if sidekick
        else DeploymentConfig()
    )
    return builder.deploy(config, quiet=True)


def settle(pids: list[int], timeout_s: float = 15.0) -> None:
    """Wait until the processes `pids` have exited, then a second for what they left behind
    (the log agent's last flush)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(process_alive(pid) for pid in pids):
        time.sleep(0.1)
    time.sleep(1.0)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
