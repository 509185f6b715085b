"""MLServer as the peer of bench_peers: its own virtual environment, its settings, a server
started fresh for each repetition.

MLServer is not a weir dependency: `ensure_venv` installs `mlserver`/`mlserver-sklearn`
1.7.x into a venv under the bench's cache (`~/.cache/weir/bench/`), with `uvloop<0.22`
(0.22+ breaks MLServer 1.7.1's inference worker: its event-loop policy raises "There is no
current event loop" at the worker's start-up and the model never loads) and the
scikit-learn weir's venv has, so the joblib file loads as it was saved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path

import httpx

from bench._peer_model import NAME
from control.embedded import free_port, stop_process

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "weir" / "bench"
REQUIREMENTS = ["mlserver>=1.7,<1.8", "mlserver-sklearn>=1.7,<1.8", "uvloop<0.22"]
SHIM = Path(__file__).resolve().parent / "_mlserver_shim"
TOPIC_IN, TOPIC_OUT = "mlserver-input", "mlserver-output"
MODEL_HEADER = "mlserver-model"


def ensure_venv(cache: Path = CACHE) -> Path:
    """The MLServer venv (created on first use, ~1 minute); returns its folder."""
    venv = cache / "mlserver-1.7"
    wanted = REQUIREMENTS + [f"scikit-learn=={package_version('scikit-learn')}"]
    stamp = venv / ".weir-bench-requirements"
    if stamp.exists() and stamp.read_text() == "\n".join(wanted):
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            *wanted,
        ],
        check=True,
    )
    stamp.write_text("\n".join(wanted))
    return venv


def installed_versions(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, json; print(json.dumps("
            "{p: m.version(p) for p in ('mlserver', 'mlserver-sklearn', 'uvloop', 'aiokafka', "
            "'scikit-learn')}))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    versions: dict[str, str] = json.loads(out)
    return versions


@dataclass
class MLServer:
    """A running MLServer: its REST endpoint and the processes whose CPU counts."""

    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def infer_url(self) -> str:
        return f"{self.url}/v2/models/{NAME}/infer"

    def pids(self) -> list[int]:
        """The main process and its children (the inference worker)."""
        pids = [self.proc.pid]
        for task in Path(f"/proc/{self.proc.pid}/task").glob("*/children"):
            pids += [int(p) for p in task.read_text().split()]
        return pids


@contextmanager
def mlserver(
    venv: Path, joblib_path: Path, bootstrap: str, fetch_wait_ms: int, workdir: Path
) -> Iterator[MLServer]:
    """Start MLServer (REST and Kafka mode, stock settings but `debug` off) serving the
    joblib model; Kafka topics must exist. Stopped on exit."""
    models = workdir / "models" / NAME
    models.mkdir(parents=True, exist_ok=True)
    (models / "model.joblib").write_bytes(joblib_path.read_bytes())
    (models / "model-settings.json").write_text(
        json.dumps(
            {
                "name": NAME,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "version": "v1"},
            }
        )
    )
    port = free_port()
    (workdir / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "kafka_enabled": True,
                "kafka_servers": bootstrap,
                "kafka_topic_input": TOPIC_IN,
                "kafka_topic_output": TOPIC_OUT,
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WEIR_", "PYTHON"))}
    env.update(PYTHONPATH=str(SHIM), WEIR_BENCH_MLSERVER_FETCH_WAIT_MS=str(fetch_wait_ms))
    log = workdir / "mlserver.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(venv / "bin" / "mlserver"), "start", str(workdir)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
        )
    server = MLServer(f"http://127.0.0.1:{port}", proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        stop_process(proc, timeout=20)


def _wait_ready(server: MLServer, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            tail = server.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"MLServer exited with {server.proc.returncode}:\n{tail}")
        try:
            if httpx.get(f"{server.url}/v2/models/{NAME}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"MLServer was not ready within {timeout_s:.0f}s; see {server.log}")


def oip_body(rows: list[list[float]]) -> bytes:
    """An Open Inference Protocol request of float32 rows, as MLServer's REST and Kafka take."""
    flat = [v for row in rows for v in row]
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "predict",
                    "shape": [len(rows), len(rows[0])],
                    "datatype": "FP32",
                    "data": flat,
                }
            ]
        }
    ).encode()


def oip_outputs(reply: bytes) -> list[float]:
    """The predictions of an OIP reply."""
    data: list[float] = json.loads(reply)["outputs"][0]["data"]
    return data
