"""Published bundles: a pipeline version with its model files, movable to another stack.

A bundle is a zip with `manifest.json` (pipeline, version, definition and each
model's sha256) and `models/<sha256>` files; `read_bundle` checks every file
against its sha before anything is registered. A bundle is read in memory, never
extracted: an entry with any other name (a path out of the archive, a link) or a
size over the limit refuses the whole bundle before its content is decompressed.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import stat
import zipfile
from dataclasses import dataclass

from control.artifacts import ArtifactStore
from control.errors import PayloadTooLarge
from control.names import check_name, check_version
from control.records import PipelineVersion
from engine.definition import PipelineSpec
from engine.errors import ModelLoadError

FORMAT = "weir-bundle/1"
MANIFEST = "manifest.json"
_MODEL_ENTRY = re.compile(r"models/[0-9a-f]{64}")


def write_bundle(version: PipelineVersion, artifacts: ArtifactStore) -> bytes:
    manifest = {
        "format": FORMAT,
        "pipeline": version.pipeline,
        "version": version.version,
        "definition": version.definition.model_dump(mode="json"),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(MANIFEST, json.dumps(manifest, indent=2))
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


def read_bundle(data: bytes, max_bytes: int) -> Bundle:
    """The bundle in `data`, checked: entry names, sizes (at most `max_bytes` unpacked in
    all), names and versions in the manifest, and every model file against its sha256.

    :raises ModelLoadError: anything is off; the message names what and how to fix it.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as bundle:
            _check_entries(bundle.infolist(), max_bytes)
            manifest = json.loads(bundle.read(MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                found = manifest.get("format") if isinstance(manifest, dict) else manifest
                raise ModelLoadError(f"not a {FORMAT} bundle (format {found!r:.80})")
            definition = PipelineSpec.model_validate(manifest["definition"])
            pipeline = check_name(manifest["pipeline"], "pipeline name")
            version = check_version(manifest["version"], "pipeline version")
            files = {}
            for ref in definition.models():
                check_name(ref.name, "model name")
                check_version(ref.version, "model version")
                content = bundle.read(f"models/{ref.sha}")
                if hashlib.sha256(content).hexdigest() != ref.sha:
                    raise ModelLoadError(
                        f"bundle file for {ref.name} does not match its sha256 "
                        f"{ref.sha}: the bundle is corrupt; publish it again"
                    )
                files[ref.sha] = content
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        KeyError,
        ValueError,
        TypeError,
        NotImplementedError,
        EOFError,
        RuntimeError,
    ) as exc:
        raise ModelLoadError(
            f"unreadable bundle ({type(exc).__name__}: {str(exc)[:200]}): "
            "import a file written by pipeline.publish()"
        ) from exc
    return Bundle(pipeline, version, definition, files)


def _check_entries(entries: list[zipfile.ZipInfo], max_bytes: int) -> None:
    """Refuse names other than the manifest and model files, links, and oversize content."""
    total = 0
    for entry in entries:
        if entry.filename != MANIFEST and not _MODEL_ENTRY.fullmatch(entry.filename):
            raise ModelLoadError(
                f"bundle entry {entry.filename!r:.120} is not {MANIFEST} nor "
                "models/<sha256>: a bundle holds nothing else; import a file "
                "written by pipeline.publish()"
            )
        if stat.S_ISLNK(entry.external_attr >> 16):
            raise ModelLoadError(
                f"bundle entry {entry.filename!r} is a symbolic link: a bundle "
                "holds plain files only"
            )
        total += entry.file_size
        if total > max_bytes:
            raise PayloadTooLarge(
                f"bundle unpacks to over {max_bytes} bytes "
                "(WEIR_MAX_UPLOAD_BYTES): refused before unpacking"
            )
