"""The `weir` command as a user runs it (its real entry point, in a terminal 80 columns wide)
against the real stack: tables that fit, errors without tracebacks, delete, tail."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from control.sdk.client import Client
from control.sdk.pipeline import Pipeline
from tests.integration._deployed import one_model_pipeline

pytestmark = pytest.mark.slow

X = np.random.default_rng(29).random((3, 10), dtype=np.float32)
COMMAND = [sys.executable, "-c", "from control.cli import main; main()"]


@pytest.fixture(scope="module")
def env(stack_home: Path) -> dict[str, str]:
    return {**os.environ, "WEIR_HOME": str(stack_home), "COLUMNS": "80"}


def weir(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *args], env=env, text=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def deployed(client: Client, diabetes_onnx: Path) -> Iterator[Pipeline]:
    """`cli-diabetes` deployed, and `cli-diabetes2` built beside it (names alike)."""
    client.build_pipeline("cli-diabetes2")
    with one_model_pipeline(client, "cli-diabetes", diabetes_onnx) as pipeline:
        yield pipeline


@pytest.fixture(scope="module")
def rows_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "rows.json"
    path.write_text(json.dumps([{"tensor": row.tolist()} for row in X]))
    return path


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_tables_fit_80_columns_and_keep_names_whole(
    env: dict[str, str], deployed: Pipeline, rows_file: Path
) -> None:
    listed = weir(env, "pipelines", "list")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in lines(listed.stdout)[1:] if line[0] != " "]
    assert {"cli-diabetes", "cli-diabetes2"} <= set(names)
    inferred = weir(env, "infer", "cli-diabetes", str(rows_file))
    logged = weir(env, "logs", "cli-diabetes", "--limit", "3")
    for done in (
        listed,
        inferred,
        logged,
        weir(env, "models", "list"),
        weir(env, "pipelines", "versions", "cli-diabetes"),
    ):
        assert done.returncode == 0, done.stderr
        assert all(len(line) <= 80 for line in done.stdout.splitlines()), done.stdout
    assert lines(inferred.stdout)[0].split() == ["time", "out.variable", "check_failures"]
    assert len(lines(inferred.stdout)) == 1 + len(X)
    assert lines(logged.stdout)[0].split() == [
        "time",
        "request_id",
        "row",
        "out.variable",
        "check_failures",
    ]


def test_wide_shows_every_field_and_json_everything(
    env: dict[str, str], deployed: Pipeline, rows_file: Path
) -> None:
    wide = weir(env, "infer", "cli-diabetes", str(rows_file), "--wide")
    header = lines(wide.stdout)[0].split()
    assert {"in.tensor", "metadata.pipeline_version", "anomaly.count"} <= set(header)
    version = deployed.status()["version"]
    assert version in weir(env, "pipelines", "list", "--wide").stdout  # not cut to 8
    rows = json.loads(weir(env, "infer", "cli-diabetes", str(rows_file), "--json").stdout)
    assert len(rows) == len(X) and len(rows[0]["in.tensor"]) == 10


def _unwrapped(text: str) -> str:
    """CLI output without the line breaks it gets at the terminal's width."""
    return " ".join(text.split())


def test_errors_that_are_not_weirs_own_print_no_traceback(
    env: dict[str, str], deployed: Pipeline, tmp_path: Path
) -> None:
    missing = weir(env, "models", "upload", "m", str(tmp_path / "nope.onnx"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    no_file = weir(env, "infer", "cli-diabetes", str(tmp_path / "nope.json"))
    assert no_file.returncode == 2 and "does not exist" in no_file.stderr
    unknown = tmp_path / "model.bin"
    unknown.write_bytes(b"\0")
    guessed = weir(env, "models", "upload", "m", str(unknown))
    assert guessed.returncode == 1 and "--runtime onnx|python" in _unwrapped(guessed.stderr)
    unreadable = tmp_path / "rows.json"
    unreadable.write_text("[{")
    bad = weir(env, "infer", "cli-diabetes", str(unreadable))
    assert bad.returncode == 1 and "not valid JSON" in _unwrapped(bad.stderr)
    for done in (missing, no_file, guessed, bad):
        assert "Traceback" not in done.stderr


def test_delete_refuses_what_is_in_use_then_deletes(
    env: dict[str, str], client: Client, diabetes_onnx: Path, rows_file: Path
) -> None:
    model = client.upload_model("cli-gone", diabetes_onnx).configure("onnx")
    pipeline = client.build_pipeline("cli-gone").add_model_step(model)
    try:
        pipeline.deploy(quiet=True)
        pipeline.infer(X)
        refused = weir(env, "pipelines", "delete", "cli-gone")
        assert refused.returncode == 1 and "is deployed" in refused.stderr
        assert "undeploy it first" in refused.stderr
    finally:
        pipeline.undeploy()
    in_use = weir(env, "models", "delete", "cli-gone")
    assert in_use.returncode == 1 and "used by pipeline(s) cli-gone" in in_use.stderr
    assert weir(env, "pipelines", "delete", "cli-gone").returncode == 0
    assert "cli-gone" not in [p.name for p in client.list_pipelines()]
    assert weir(env, "models", "delete", "cli-gone").returncode == 0
    assert "cli-gone" not in [m.name for m in client.list_models()]
    again = weir(env, "pipelines", "delete", "cli-gone")
    assert again.returncode == 1 and "pipeline 'cli-gone' not found" in again.stderr
    # The name can be used afresh: no versions or logs of the deleted pipeline come back.
    fresh = client.build_pipeline("cli-gone")
    assert fresh.versions() == [] and len(fresh.logs()) == 0


@pytest.mark.parametrize(
    "follow", [["--json"], ["--logs", "--json"], []], ids=["results", "logs", "lines"]
)
def test_tail_follows_until_ctrl_c(
    env: dict[str, str], deployed: Pipeline, follow: list[str]
) -> None:
    tail = subprocess.Popen(
        [*COMMAND, "tail", "cli-diabetes", *follow],
        env={**env, "PYTHONFAULTHANDLER": "1"},  # SIGABRT prints where it stands
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl-C as in a terminal, however pytest was started: a shell's background job
        # ignores SIGINT, and its children inherit that (the --logs legs then never stopped).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert tail.stderr is not None and tail.stdout is not None
        assert "(Ctrl-C to stop)" in tail.stderr.readline()  # following from here on
        deployed.infer(X[:1])
        first = tail.stdout.readline()
        tail.send_signal(signal.SIGINT)
        try:
            rest, errors = tail.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # say where it stands
            tail.send_signal(signal.SIGABRT)
            rest, errors = tail.communicate(timeout=10)
            pytest.fail(f"tail did not stop on Ctrl-C within 30s; its threads:\n{errors}")
    finally:
        tail.kill()
    assert tail.returncode == 0 and "Traceback" not in errors, errors
    if follow:
        row: dict[str, Any] = json.loads(first)
        np.testing.assert_allclose(
            row["out.variable"], deployed.infer(X[:1])["out.variable"][0], rtol=1e-5
        )
        assert row["request_id"]
    else:
        assert "out.variable=[" in first and len(first.rstrip("\n")) <= 80
