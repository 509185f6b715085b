"""Worker ids: which pipeline version, role and replica a worker serves, read back from its id."""

from __future__ import annotations

import secrets

from control.records import PipelineVersion
from streams.plan import WorkerRole


def new_worker_id(
    version: PipelineVersion,
    role: WorkerRole,
    replica: int,
    suffix: str | None = None,
    sidekick: int | None = None,
) -> str:
    """A worker's id: `<pipeline>-<version>-<replica>-<suffix>` (random by default, no
    dashes); a shadow worker's replica part is `shadow<replica>`, a sidekick worker's
    `sidekick<step>x<replica>`."""
    part = {
        "main": str(replica),
        "shadow": f"shadow{replica}",
        "sidekick": f"sidekick{sidekick}x{replica}",
    }[role]
    return f"{version.pipeline}-{version.version[:8]}-{part}-{suffix or secrets.token_hex(2)}"


def worker_role(worker_id: str) -> WorkerRole:
    """The role an id from `new_worker_id` names ("main" for any other id)."""
    parts = worker_id.rsplit("-", 2)
    part = parts[1] if len(parts) == 3 else ""
    if part.startswith("shadow"):
        return "shadow"
    return "sidekick" if part.startswith("sidekick") else "main"
