"""Faults in combination under load (bench/_chaos.py): one fixed seed on each broker; and
the issue's sequence of config-only redeploys.

The chaos run's stack is its own (its broker, Redis and server are killed and restarted).
A failure prints the report: replay its seed with
`bench/chaos.py --broker <broker> --seed <seed> --minutes 1 --keep`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench._chaos import run_chaos
from control import DeploymentConfigBuilder, WaitForDeployError
from control.sdk.client import Client

pytestmark = pytest.mark.slow

SEED = 6
"""Its schedule mixes redeploys of every kind (a step moved to a sidekick among them),
worker, shadow and server kills, a frozen worker, Redis restarted, and on Apache Kafka
the broker restarted twice."""
SECONDS = 60.0
FRAME = pd.DataFrame({"tensor": [np.full(10, 0.1, dtype=np.float32).tolist()]})


def test_the_stream_comes_back_after_faults_in_combination(broker: str, tmp_path: Path) -> None:
    report = run_chaos(tmp_path, broker, seed=SEED, seconds=SECONDS)  # type: ignore[arg-type]
    applied = {fault["kind"] for fault in report["faults"]}
    assert len(applied) >= 5, applied  # the seed's schedule mixes kinds of fault
    assert report["problems"] == [], "\n".join(
        [
            *report["problems"],
            "the server said:",
            *report["server_said"],
            json.dumps(report, indent=1, default=str)[:20_000],
        ]
    )
    assert report["sent"] > 0 and report["answered"] == report["sent"]


def test_a_failed_config_redeploy_leaves_the_pipeline_deployable(
    client: Client, stack_home: Path, diabetes_onnx: Path
) -> None:
    """The issue's second sequence: two replicas, a config-only redeploy (same version), one
    with a memory limit too small to start (it fails; the old workers keep serving), then an
    undeploy and a deploy again. No worker is killed for hanging while it stops, and the
    pipeline deploys again at once (before, every later deploy of it failed)."""
    server_log = stack_home / "run" / "server.log"
    logged_before = server_log.stat().st_size
    model = client.upload_model("chaos-config", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline("chaos-config").add_model_step(model)
    pipeline.deploy(DeploymentConfigBuilder().replica_count(2).build(), quiet=True)
    pipeline.deploy(
        DeploymentConfigBuilder().replica_count(2).cpus(1).memory("512Mi").build(), quiet=True
    )
    with pytest.raises(WaitForDeployError, match="memory"):
        pipeline.deploy(
            DeploymentConfigBuilder().replica_count(2).memory("20Mi").build(), quiet=True
        )
    assert pipeline.status()["status"] == "Running"
    pipeline.undeploy()
    pipeline.deploy(quiet=True)
    try:
        assert pipeline.infer(FRAME)["out.variable"].notna().all()
    finally:
        pipeline.undeploy()
    with open(server_log, "rb") as log:
        log.seek(logged_before)
        assert b"while stopping; killing it" not in log.read()
