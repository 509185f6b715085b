"""The content-addressed store of uploaded model files."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from engine.errors import ModelLoadError

_SHA256 = re.compile(r"[0-9a-f]{64}")


class ArtifactStore:
    """Files kept under their sha256; a stored file is never rewritten."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha: str) -> Path:
        if not _SHA256.fullmatch(sha):  # it names a file: never let it name one elsewhere
            raise ModelLoadError(f"not a sha256 (64 lowercase hex digits): {sha[:80]!r}")
        return self.root / "sha256" / sha[:2] / sha

    def put(self, data: bytes) -> str:
        """Store `data` and return its sha256 (idempotent)."""
        sha = hashlib.sha256(data).hexdigest()
        if not self.exists(sha):
            fd, tmp = tempfile.mkstemp(dir=self.incoming())
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self.adopt(Path(tmp), sha)
        return sha

    def incoming(self) -> Path:
        """Where files being received are written before `adopt` (the store's file system)."""
        path = self.root / "incoming"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def adopt(self, received: Path, sha: str) -> None:
        """Move a fully received file, whose sha256 is `sha`, to its place (or drop it if the
        store has it already)."""
        target = self.path(sha)
        if target.exists():
            received.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(received, target)

    def get(self, sha: str) -> bytes:
        return self.path(sha).read_bytes()

    def exists(self, sha: str) -> bool:
        return self.path(sha).exists()

    def delete(self, sha: str) -> None:
        """Remove a file no model version refers to any more (absent: nothing to do)."""
        self.path(sha).unlink(missing_ok=True)
