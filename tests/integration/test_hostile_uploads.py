"""Hostile uploads: bundles built to escape WEIR_HOME or exhaust memory, names that hide
paths or control characters, Python steps on a server that refuses them.

Each is refused with an error that says what was wrong, registers nothing, and writes
nothing outside WEIR_HOME (`_own_server` fences the server in).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from control.embedded import Service
from control.errors import InvalidNameError, PayloadTooLarge, PolicyError
from control.names import check_file_name, check_name
from control.records import ModelVersion
from control.registry import Registry
from control.sdk.client import Client
from engine.definition import ModelStep, PipelineSpec
from engine.errors import ModelLoadError, WeirError
from tests.integration._own_server import OwnServer, own_server

pytestmark = pytest.mark.slow

UPLOAD_LIMIT = 1024 * 1024
STEP = b"def process_data(input_data):\n    return {'doubled': input_data['tensor'] * 2}\n"
NAME_EXAMPLES = 40


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, kafka_service: Service, redis_service: Service
) -> Iterator[OwnServer]:
    with own_server(
        tmp_path_factory.mktemp("hostile"),
        kafka_service,
        redis_service,
        10,
        max_upload_bytes=UPLOAD_LIMIT,
    ) as own:
        yield own


@pytest.fixture(scope="module")
def strict(
    tmp_path_factory: pytest.TempPathFactory, kafka_service: Service, redis_service: Service
) -> Iterator[OwnServer]:
    """A server that refuses Python steps."""
    with own_server(
        tmp_path_factory.mktemp("strict"),
        kafka_service,
        redis_service,
        11,
        allow_python_steps=False,
    ) as own:
        yield own


def _client(server: OwnServer) -> Client:
    return Client(server_url=server.url, token=server.token())


@pytest.fixture(scope="module")
def bundles(
    server: OwnServer, diabetes_onnx: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, bytes]:
    """Published bundles from the permissive server: an ONNX pipeline, a Python one."""
    client, folder = _client(server), tmp_path_factory.mktemp("bundles")
    onnx = client.upload_model("diabetes", diabetes_onnx).configure("onnx")
    step_file = folder / "double.py"
    step_file.write_bytes(STEP)
    step = client.upload_model("double", step_file)
    out = {}
    for name, model in (("onnx", onnx), ("python", step)):
        pipeline = client.build_pipeline(f"{name}-bundle").add_model_step(model)
        pipeline.create_version()
        out[name] = pipeline.publish(folder / f"{name}.weir").read_bytes()
    return out


def _entries(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as z:
        return {name: z.read(name) for name in z.namelist()}


def _zip(entries: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return out.getvalue()


def _with_manifest(bundle: bytes, **changes: Any) -> bytes:
    """The bundle with its manifest changed; `model` changes apply to its first model."""
    entries = _entries(bundle)
    manifest = json.loads(entries["manifest.json"])
    model = manifest["definition"]["steps"][0]["model"]
    model.update(changes.pop("model", {}))
    manifest.update(changes)
    entries["manifest.json"] = json.dumps(manifest).encode()
    return _zip(entries)


def _hard_link_tar() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        link = tarfile.TarInfo("models/passwd")
        link.type, link.linkname = tarfile.LNKTYPE, "/etc/passwd"
        tar.addfile(link)
    return out.getvalue()


OUTSIDE = f"/tmp/weir-hostile-{uuid.uuid4().hex}"
"""Where the absolute-path entry points: it must never appear."""


def _hostile(bundles: dict[str, bytes]) -> dict[str, tuple[bytes, type[WeirError], str]]:
    """Each hostile archive with the error and words its import must be refused with."""
    good = _entries(bundles["onnx"])
    sha = next(name for name in good if name.startswith("models/")).split("/")[1]
    zeros = b"\x00" * (4 * UPLOAD_LIMIT)  # deflates to a few KB: a decompression bomb
    return {
        "dot-dot path": (
            _zip({**good, "../../outside.txt": b"x"}),
            ModelLoadError,
            "'../../outside.txt' is not manifest.json nor models/<sha256>",
        ),
        "absolute path": (_zip({**good, OUTSIDE: b"x"}), ModelLoadError, "is not manifest.json"),
        "symlink out": (
            _zip({"manifest.json": good["manifest.json"]}, links={f"models/{sha}": "/etc/passwd"}),
            ModelLoadError,
            "is a symbolic link",
        ),
        "hard link (tar)": (_hard_link_tar(), ModelLoadError, "unreadable bundle"),
        "decompression bomb": (
            _zip({**good, f"models/{sha}": zeros}),
            PayloadTooLarge,
            "refused before unpacking",
        ),
        "huge manifest": (
            _zip({"manifest.json": b" " * (2 * UPLOAD_LIMIT)}),
            PayloadTooLarge,
            "WEIR_MAX_UPLOAD_BYTES",
        ),
        "model name with a path": (
            _with_manifest(bundles["onnx"], model={"name": "../../x"}),
            InvalidNameError,
            "invalid model name '../../x'",
        ),
        "pipeline name with a newline": (
            _with_manifest(bundles["onnx"], pipeline="a\nb"),
            InvalidNameError,
            "invalid pipeline name",
        ),
        "version with a slash": (
            _with_manifest(bundles["onnx"], model={"version": "../v"}),
            InvalidNameError,
            "invalid model version",
        ),
        "sha naming a path": (
            _with_manifest(bundles["onnx"], model={"sha": "../../etc/passwd"}),
            ModelLoadError,
            "unreadable bundle",
        ),
        "not an archive": (b"\x89PNG not a zip at all", ModelLoadError, "unreadable bundle"),
    }


def test_hostile_bundles_are_refused_and_write_nothing_outside_home(
    server: OwnServer, bundles: dict[str, bytes], tmp_path: Path
) -> None:
    client = _client(server)
    before = {p.name for p in client.list_pipelines()}
    for case, (data, error, words) in _hostile(bundles).items():
        path = tmp_path / f"{case}.weir"
        path.write_bytes(data)
        with pytest.raises(error) as refused:
            client.import_bundle(path)
        assert words in str(refused.value), (case, str(refused.value))
    assert {p.name for p in client.list_pipelines()} == before  # nothing registered
    assert not Path(OUTSIDE).exists()
    assert not server.written_outside()
    assert not list(server.root.rglob("outside.txt"))
    assert not server.server_errors()


def test_weir_import_of_a_hostile_bundle_exits_with_the_reason(
    server: OwnServer, bundles: dict[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "escape.weir"
    path.write_bytes(_hostile(bundles)["dot-dot path"][0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEIR_")}
    done = subprocess.run(
        [sys.executable, "-m", "control.cli", "import", str(path)],
        env={**env, "WEIR_HOME": str(server.home)},
        text=True,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "is not manifest.json nor models/<sha256>" in " ".join(done.stderr.split())


def test_a_good_bundle_still_imports(
    server: OwnServer, bundles: dict[str, bytes], tmp_path: Path
) -> None:
    path = tmp_path / "good.weir"
    path.write_bytes(_with_manifest(bundles["onnx"], pipeline="imported"))
    client = _client(server)
    try:
        assert client.import_bundle(path)["pipeline"] == "imported"
    finally:
        client.get_pipeline("imported").undeploy()


@given(name=st.text(min_size=1, max_size=70), filename=st.text(max_size=300))
@settings(
    max_examples=NAME_EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_generated_model_and_file_names_are_kept_or_refused_with_a_reason(
    server: OwnServer, diabetes_onnx: Path, name: str, filename: str
) -> None:
    response = server.request(
        "POST",
        f"/models/{quote(name, safe='')}",
        params={"filename": filename, "runtime": "onnx"},
        content=diabetes_onnx.read_bytes(),
    )
    if response.status_code == 200:
        assert check_name(name) and check_file_name(filename)
        assert response.json()["file_name"] == filename
    else:
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["message"]
    assert not server.written_outside()


def test_names_with_paths_or_control_characters_are_refused(
    server: OwnServer, diabetes_onnx: Path
) -> None:
    for filename in (
        "../../evil.onnx",
        "/etc/evil.onnx",
        "a\\b.onnx",
        "..",
        "evil\x00.onnx",
        "evil\n.onnx",
        "\x1b[31mred.onnx",
    ):
        response = server.request(
            "POST", "/models/ok", params={"filename": filename}, content=diabetes_onnx.read_bytes()
        )
        assert response.status_code == 400, filename
        assert response.json()["error"] == "InvalidNameError"
    for name in ("a%2Fb", "a%0Ab", "..", "A"):
        response = server.request(
            "POST",
            f"/models/{name}",
            params={"filename": "m.onnx"},
            content=diabetes_onnx.read_bytes(),
        )
        # ".." is resolved by the client: POST / is not a route (405)
        assert response.status_code in (400, 404, 405) and response.json()["message"], name
    assert not server.written_outside()


def test_a_server_that_refuses_python_steps_refuses_them_everywhere(
    strict: OwnServer, bundles: dict[str, bytes], diabetes_onnx: Path, tmp_path: Path
) -> None:
    client = _client(strict)
    step = tmp_path / "double.py"
    step.write_bytes(STEP)
    with pytest.raises(PolicyError, match="WEIR_ALLOW_PYTHON_STEPS=false"):
        client.upload_model("double", step)
    assert "double" not in {m.name for m in client.list_models()}
    onnx = client.upload_model("diabetes", diabetes_onnx)
    with pytest.raises(PolicyError, match="Python step"):
        onnx.configure("python")
    path = tmp_path / "python.weir"
    path.write_bytes(bundles["python"])
    with pytest.raises(PolicyError, match="refuses Python steps"):
        client.import_bundle(path)
    assert "python-bundle" not in {p.name for p in client.list_pipelines()}
    # A version stored before the server refused Python (seeded in its registry) is not deployed.
    registry = Registry(strict.settings.redis_url or "")
    legacy = registry.add_model(
        ModelVersion(
            name="legacy",
            version=str(uuid.uuid4()),
            sha=hashlib.sha256(STEP).hexdigest(),
            runtime="python",
            workspace="default",
            file_name="legacy.py",
            size=len(STEP),
        )
    )
    registry.get_or_create_pipeline("default", "legacy")
    registry.add_version("default", "legacy", PipelineSpec(steps=[ModelStep(model=legacy.ref())]))
    with pytest.raises(PolicyError, match="'legacy' is a Python step"):
        client.get_pipeline("legacy").deploy(quiet=True)
    assert client.get_pipeline("legacy").status()["status"].endswith("is not deployed")
    assert not strict.written_outside()
