"""engine/runtimes: Python steps uploaded as archives, run in processes (and environments) of
their own. The slow tests install real packages from the package index into a step's
environment (Pillow, and numpy/pyarrow at versions weir's own environment does not have)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from engine import codecs
from engine.definition import ModelRef
from engine.errors import CodecError, ModelLoadError, StepFailed
from engine.runtimes._envs import READY
from engine.runtimes.base import RuntimeOptions, sha256_file
from engine.runtimes.python import PythonRuntime
from tests._png import png_bytes
from tests.engine._steps import PILLOW_STEP, VERSIONS_STEP, step_zip

RAGGED = """
import numpy as np
import helper

def process_data(input_data):
    print("a print must not break the pipe")
    rows = input_data["b"]
    return {"n": np.array([len(r) for r in rows]), "twice": [np.concatenate([r, r]) for r in rows],
            "k": np.full(len(rows), helper.K)}
"""
CRASHES = """
import os
import numpy as np

def process_data(input_data):
    if input_data["x"][0] < 0:
        os._exit(3)
    return {"x": input_data["x"] * 2}
"""


@pytest.fixture(scope="module")
def env_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("envs")
    yield root
    shutil.rmtree(root, ignore_errors=True)  # ~250 MB per environment (pyarrow's share)


def _load(path: Path, env_root: Path, name: str = "pre", **options: object) -> PythonRuntime:
    runtime = PythonRuntime(
        ModelRef(name=name, version="v1", sha=sha256_file(path), runtime="python")
    )
    runtime.load(path, RuntimeOptions(env_root=env_root, **options))  # type: ignore[arg-type]
    return runtime


def _ragged_bytes(*lengths: int) -> pa.RecordBatch:
    rows = [np.arange(n, dtype=np.uint8) for n in lengths]
    return codecs.batch_from_arrays({"b": rows})


def test_archive_without_requirements_runs_in_weirs_python(tmp_path: Path, env_root: Path) -> None:
    path = step_zip(tmp_path / "s.zip", {"main.py": RAGGED, "helper.py": "K = 7\n"}, folder="s/")
    messages: list[str] = []
    runtime = _load(path, env_root, progress=messages.append)
    try:
        out = runtime.predict(_ragged_bytes(3, 1, 0))
    finally:
        runtime.unload()
    assert out.column("n").to_pylist() == [3, 1, 0]
    assert out.column("twice").to_pylist() == [[0, 1, 2, 0, 1, 2], [0, 0], []]
    assert out.column("k").to_pylist() == [7, 7, 7]
    assert messages == []  # nothing to build


def test_errors_come_back_as_the_same_kind(tmp_path: Path, env_root: Path) -> None:
    path = step_zip(tmp_path / "s.zip", {"main.py": RAGGED, "helper.py": "K = 7\n"})
    runtime = _load(path, env_root)
    try:
        with pytest.raises(StepFailed, match=r"step 'pre' failed: KeyError: 'b'"):
            runtime.predict(pa.RecordBatch.from_pydict({"x": [1.0]}))
        with pytest.raises(CodecError, match="the codec refused column 'b'"):
            runtime.predict(pa.RecordBatch.from_pydict({"b": [[[1], [1, 2]]]}))
        assert runtime.predict(_ragged_bytes(2)).column("n").to_pylist() == [2]
    finally:
        runtime.unload()


def test_a_crashed_step_process_fails_its_batch_and_starts_again(
    tmp_path: Path, env_root: Path
) -> None:
    runtime = _load(step_zip(tmp_path / "s.zip", {"main.py": CRASHES}), env_root)
    try:
        with pytest.raises(StepFailed, match="its process exited with code 3"):
            runtime.predict(pa.RecordBatch.from_pydict({"x": [-1.0]}))
        assert runtime.predict(pa.RecordBatch.from_pydict({"x": [2.0]})).column(0).to_pylist() == [
            4.0
        ]
    finally:
        runtime.unload()


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ({"main.py": "x = 1\n"}, "none of its top-level modules defines process_data"),
        ({"a.py": RAGGED, "b.py": CRASHES}, r"found: a.py \(process_data\), b.py \(process_data\)"),
        ({"main.py": "def process_data(:\n"}, "main.py in the archive is not valid Python"),
        ({"../evil.py": RAGGED}, "the archive holds a file outside its folder"),
    ],
)
def test_bad_archives_are_refused_at_inspect(
    tmp_path: Path, modules: dict[str, str], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message):
        PythonRuntime.inspect(step_zip(tmp_path / "s.zip", modules))


def test_an_import_error_fails_the_load_with_its_message(tmp_path: Path, env_root: Path) -> None:
    path = step_zip(tmp_path / "s.zip", {"main.py": "import not_installed_anywhere\n" + CRASHES})
    PythonRuntime.inspect(path)  # the server does not import it (it may need its packages)
    with pytest.raises(
        ModelLoadError,
        match="importing main.py failed: ModuleNotFoundError: "
        "No module named 'not_installed_anywhere'",
    ):
        _load(path, env_root)


@pytest.mark.slow
def test_pillow_is_installed_in_the_steps_environment_only(tmp_path: Path, env_root: Path) -> None:
    assert importlib.util.find_spec("PIL") is None, "weir's own environment must lack Pillow"
    path = step_zip(tmp_path / "s.zip", {"decode.py": PILLOW_STEP}, "Pillow\n")
    messages: list[str] = []
    runtime = _load(path, env_root, progress=messages.append)
    images = [
        np.random.default_rng(i).integers(0, 255, (h, w, 3), np.uint8)
        for i, (h, w) in enumerate([(4, 5), (7, 3)])
    ]
    try:
        out = runtime.predict(
            codecs.batch_from_arrays(
                {"png": [np.frombuffer(png_bytes(im), np.uint8) for im in images]}
            )
        )
    finally:
        runtime.unload()
    assert out.column("width").to_pylist() == [5, 3]
    for got, image in zip(out.column("pixels").to_pylist(), images):
        assert got == image.reshape(-1).tolist()
    assert any("building its environment" in m for m in messages)
    assert any(
        m.startswith("step 'pre': Successfully installed") and "Pillow" in m for m in messages
    ), messages
    again: list[str] = []  # a new version with the same requirements: built already
    second = step_zip(tmp_path / "s2.zip", {"decode.py": PILLOW_STEP + "\n# v2\n"}, "Pillow\n")
    _load(second, env_root, progress=again.append).unload()
    assert again == []


@pytest.mark.slow
def test_a_step_pins_versions_weirs_environment_cannot_have(tmp_path: Path, env_root: Path) -> None:
    assert int(np.__version__.split(".")[0]) >= 2 and pa.__version__ != "17.0.0"
    path = step_zip(tmp_path / "s.zip", {"main.py": VERSIONS_STEP}, "numpy<2\npyarrow==17.0.0\n")
    runtime = _load(path, env_root, name="pinned")
    try:
        out = runtime.predict(pa.RecordBatch.from_pydict({"x": [1.0, 2.0]}))
    finally:
        runtime.unload()
    assert out.column("numpy").to_pylist()[0].startswith("1.")
    assert out.column("pyarrow").to_pylist() == ["17.0.0", "17.0.0"]


@pytest.mark.slow
def test_a_requirement_that_cannot_be_installed_fails_the_load_with_pips_message(
    tmp_path: Path, env_root: Path
) -> None:
    path = step_zip(
        tmp_path / "s.zip", {"main.py": VERSIONS_STEP}, "weir-no-such-package-anywhere==1.0\n"
    )
    with pytest.raises(
        ModelLoadError,
        match=r"installing the requirements of step 'pre' failed "
        r"\(pip exited with 1\): .*No matching distribution found for "
        r"weir-no-such-package-anywhere==1.0",
    ):
        _load(path, env_root)
    assert not list(env_root.glob(f"py*/{READY}")) or all(
        "weir-no-such" not in p.read_text() for p in env_root.glob(f"py*/{READY}")
    )


@pytest.mark.slow
def test_an_offline_host_installs_from_a_wheel_directory(tmp_path: Path, env_root: Path) -> None:
    wheels = tmp_path / "wheels"
    _probe_wheel(wheels / "weir_offline_probe-1.0-py3-none-any.whl")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--disable-pip-version-check",
            "-q",
            "download",
            "-d",
            str(wheels),
            "numpy",
            "pyarrow",
        ],
        check=True,
    )
    source = (
        "import numpy as np\nimport weir_offline_probe as p\n\ndef process_data(d):\n"
        "    return {'a': np.full(len(d['x']), p.ANSWER)}\n"
    )
    path = step_zip(tmp_path / "s.zip", {"main.py": source}, "weir-offline-probe\n")
    runtime = _load(path, env_root, wheel_dir=wheels)
    try:
        assert runtime.predict(pa.RecordBatch.from_pydict({"x": [1]})).column("a").to_pylist() == [
            42
        ]
    finally:
        runtime.unload()


def _probe_wheel(path: Path) -> None:
    """A pure-Python wheel written by hand: package `weir_offline_probe`, ANSWER = 42."""
    info = "weir_offline_probe-1.0.dist-info"
    files = {
        "weir_offline_probe/__init__.py": "ANSWER = 42\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: weir-offline-probe\nVersion: 1.0\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: weir-tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
        wheel.writestr(f"{info}/RECORD", "".join(f"{n},,\n" for n in [*files, f"{info}/RECORD"]))
