"""control/worker_ids.py: a worker's id says which pipeline version and role it serves."""

from __future__ import annotations

from control.worker_ids import new_worker_id, worker_role
from control.records import PipelineVersion
from engine.definition import PipelineSpec

VERSION = PipelineVersion(
    workspace="default",
    pipeline="my-shadow-test",
    version="0d6c1a7e-1c5e-4f47-a0f4-9b1a5a0b8d2e",
    definition=PipelineSpec(),
)


def test_ids_name_the_pipeline_version_replica_and_role() -> None:
    main = new_worker_id(VERSION, "main", 2)
    shadow = new_worker_id(VERSION, "shadow", 0)
    assert main.startswith("my-shadow-test-0d6c1a7e-2-")
    assert shadow.startswith("my-shadow-test-0d6c1a7e-shadow0-")
    assert (worker_role(main), worker_role(shadow)) == ("main", "shadow")  # "shadow" in the name
    assert new_worker_id(VERSION, "main", 0) != new_worker_id(VERSION, "main", 0)


def test_a_fixed_suffix_gives_a_stable_id_and_other_ids_count_as_main() -> None:
    assert (
        new_worker_id(VERSION, "shadow", 1, suffix="host1")
        == "my-shadow-test-0d6c1a7e-shadow1-host1"
    )
    assert worker_role("custom") == worker_role("a-b") == "main"
