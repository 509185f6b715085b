"""Published bundles: a pipeline version with its model files, movable to another stack.

A bundle is a zip with `manifest.json` (pipeline, version, definition and each
model's sha256) and `models/<sha256>` files; `read_bundle` checks every file
against its sha before anything is registered.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass

from control.artifacts import ArtifactStore
from control.records import PipelineVersion
from engine.definition import PipelineSpec
from engine.errors import ModelLoadError

FORMAT = "weir-bundle/1"


def write_bundle(version: PipelineVersion, artifacts: ArtifactStore) -> bytes:
    manifest = {"format": FORMAT, "pipeline": version.pipeline, "version": version.version,
                "definition": version.definition.model_dump(mode="json")}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("manifest.json", json.dumps(manifest, indent=2))
        for ref in version.definition.models():
            bundle.writestr(f"models/{ref.sha}", artifacts.get(ref.sha))
    return out.getvalue()


@dataclass(frozen=True)
class Bundle:
    pipeline: str
    version: str
    definition: PipelineSpec
    files: dict[str, bytes]
    """Model files by sha256, each already checked."""


def read_bundle(data: bytes) -> Bundle:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            manifest = json.loads(bundle.read("manifest.json"))
            if manifest.get("format") != FORMAT:
                raise ModelLoadError(f"not a {FORMAT} bundle (format {manifest.get('format')!r})")
            definition = PipelineSpec.model_validate(manifest["definition"])
            files = {}
            for ref in definition.models():
                content = bundle.read(f"models/{ref.sha}")
                if hashlib.sha256(content).hexdigest() != ref.sha:
                    raise ModelLoadError(f"bundle file for {ref.name} does not match its sha256 "
                                         f"{ref.sha}: the bundle is corrupt; publish it again")
                files[ref.sha] = content
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelLoadError(f"unreadable bundle: {exc}") from exc
    return Bundle(manifest["pipeline"], manifest["version"], definition, files)
