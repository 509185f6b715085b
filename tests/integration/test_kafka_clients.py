"""Kafka clients users already have, talking to a pipeline's topics on the real stack:
`kcat` from a shell (Debian's package, installed here if missing) and confluent-kafka.

Answers are decoded by their `content-type` header: a JSON request's answer is JSON, an
Arrow one's Arrow (what each format gives is tested in test_json_answers.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pytest

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from engine import codecs
from streams.messages import CONTENT_TYPE, REQUEST_ID
from tests.integration._confluent import confluent_round_trip
from tests.integration._deployed import one_model_pipeline

pytestmark = pytest.mark.slow

X = np.random.default_rng(23).random((5, 10), dtype=np.float32)
WAIT_S = 30.0


def _install_kcat(config: pytest.Config) -> str:
    """Run `apt-get install -y kcat` (after `apt-get update` if that fails), showing its
    output; returns why it could not, or ''."""
    if os.geteuid() != 0:
        return "installing needs root"
    if shutil.which("apt-get") is None:
        return "there is no apt-get here"
    capture = config.pluginmanager.getplugin("capturemanager")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    why = ""
    for command in (
        ["apt-get", "install", "-y", "kcat"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "kcat"],
    ):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        with capture.global_and_fixture_disabled():
            print(f"\n$ {' '.join(command)}\n{done.stdout}{done.stderr}", flush=True)
        if done.returncode == 0 and command[1] == "install":
            return ""
        why = f"`{' '.join(command)}` exited {done.returncode}: {done.stderr.strip()[-300:]}"
    return why


class Kcat(NamedTuple):
    """How to run kcat here: the executable, and the environment it needs."""

    path: str
    env: dict[str, str]

    def run(self, *args: str, input: bytes | None = None) -> bytes:
        return subprocess.run(
            [self.path, *args],
            input=input,
            env=self.env,
            capture_output=True,
            timeout=WAIT_S,
            check=True,
        ).stdout


def _librdkafka_for(path: str, bootstrap: str, config: pytest.Config, libs: Path) -> dict[str, str]:
    """kcat's environment: as it is where kcat can talk to the broker; else with the newer
    librdkafka that confluent-kafka ships (Debian 12's librdkafka 2.0.2 cannot read the
    embedded Tansu broker's ApiVersions answer: "Read underflow"; 2.16 can)."""
    env = dict(os.environ)
    probe = subprocess.run(
        [path, "-L", "-b", bootstrap, "-m", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    if probe.returncode == 0 or "ApiVersionRequest failed" not in probe.stderr:
        return env
    import confluent_kafka

    bundled = sorted(
        Path(confluent_kafka.__file__).parent.parent.glob("confluent_kafka.libs/librdkafka*.so*")
    )
    if not bundled:
        return env
    (libs / "librdkafka.so.1").symlink_to(bundled[0])
    with config.pluginmanager.getplugin("capturemanager").global_and_fixture_disabled():
        print(
            "\nkcat's librdkafka cannot read this broker's ApiVersions answer; running kcat "
            f"with confluent-kafka's ({bundled[0].name})",
            flush=True,
        )
    return {**env, "LD_LIBRARY_PATH": str(libs)}


@pytest.fixture(scope="session")
def kcat(
    pytestconfig: pytest.Config, stack: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Kcat:
    """kcat, installed if missing; skipped with the reason where it cannot be installed
    (failed under CI=true, where every client must be proven)."""
    found = shutil.which("kcat")
    if found is None:
        why = _install_kcat(pytestconfig) or "apt-get succeeded but kcat is not on PATH"
        found = shutil.which("kcat")
        if found is None:
            message = f"kcat is missing and could not be installed: {why}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
    return Kcat(
        found,
        _librdkafka_for(
            found,
            stack["kafka_bootstrap"],
            pytestconfig,
            tmp_path_factory.mktemp("kcat-librdkafka"),
        ),
    )


@pytest.fixture(scope="module")
def pipeline(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    with one_model_pipeline(client, "kc-diabetes", diabetes_onnx) as deployed:
        yield deployed


def expected(model: Path, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(str(model)).run(None, {"float_input": x})[0]


def answer(headers: dict[str, bytes], value: bytes) -> pa.RecordBatch:
    """A result record's rows, in the format its content-type header names."""
    return codecs.decode(value, headers[CONTENT_TYPE].decode())


def wait_for(read: Callable[[], pa.RecordBatch | None]) -> pa.RecordBatch:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = read()
        if found is not None:
            return found
    raise AssertionError(f"no answer on the result topic within {WAIT_S:.0f}s")


# -- kcat, as a shell user runs it ---------------------------------------------------------
_FRAME = re.compile(rb"HEADERS (.*?)\n", re.DOTALL)


def kcat_answers(
    kcat: Kcat, bootstrap: str, topic: str
) -> Iterator[tuple[dict[str, bytes], bytes]]:
    """Every record on `topic` so far, read by `kcat -C -e`: a line of headers, then the
    value's length (4 bytes, big-endian: kcat's %R) and the value."""
    out = kcat.run(
        "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", "HEADERS %h\n%R%s"
    )
    at = 0
    while (match := _FRAME.match(out, at)) is not None:
        size_at = match.end()
        size = int.from_bytes(out[size_at : size_at + 4], "big", signed=True)
        value = out[size_at + 4 : size_at + 4 + max(size, 0)]
        headers = {
            key.decode(): value
            for key, _, value in (pair.partition(b"=") for pair in match.group(1).split(b","))
        }
        yield headers, value
        at = size_at + 4 + max(size, 0)


def test_kcat_produces_json_rows_and_consumes_the_answer(
    kcat: Kcat, stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    topics, bootstrap = pipeline.topics(), stack["kafka_bootstrap"]
    request_id = f"kcat-{uuid.uuid4().hex[:8]}"
    rows = json.dumps([{"tensor": row.tolist()} for row in X])
    kcat.run(
        "-P",
        "-b",
        bootstrap,
        "-t",
        topics["input"],
        "-k",
        "shell",
        "-H",
        "content-type=application/json",
        "-H",
        f"{REQUEST_ID}={request_id}",
        input=rows.encode() + b"\n",
    )

    def ours() -> pa.RecordBatch | None:
        return next(
            (
                answer(h, v)
                for h, v in kcat_answers(kcat, bootstrap, topics["output"])
                if h.get(REQUEST_ID) == request_id.encode()
            ),
            None,
        )

    batch = wait_for(ours)
    np.testing.assert_allclose(
        codecs.column_to_ndarray(batch.column("out.variable")),
        expected(diabetes_onnx, X),
        rtol=1e-5,
    )


# -- confluent-kafka, as a Python service runs it ----------------------------------------
def test_confluent_kafka_produces_arrow_and_json_and_consumes_the_answers(
    stack: dict[str, Any], pipeline: Pipeline, diabetes_onnx: Path
) -> None:
    topics, bootstrap = pipeline.topics(), stack["kafka_bootstrap"]
    sent = {
        f"ck-arrow-{uuid.uuid4().hex[:8]}": (
            codecs.ARROW_STREAM,
            codecs.encode(codecs.batch_from_arrays({"float_input": X}), codecs.ARROW_STREAM),
        ),
        f"ck-json-{uuid.uuid4().hex[:8]}": (
            "application/json",
            json.dumps([{"tensor": row.tolist()} for row in X]).encode(),
        ),
    }
    got = confluent_round_trip(bootstrap, topics, sent, WAIT_S)
    for headers, value in got.values():
        batch = answer(headers, value)
        np.testing.assert_allclose(
            codecs.column_to_ndarray(batch.column("out.variable")),
            expected(diabetes_onnx, X),
            rtol=1e-5,
        )
