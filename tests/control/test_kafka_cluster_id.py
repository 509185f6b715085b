"""The cluster id handed to Kafka's storage tool: its argument parser reads a value starting
with '-' as an option, which failed one format in 64."""

from __future__ import annotations

import base64

from control.apache_kafka.broker import new_cluster_id


def test_cluster_ids_never_start_with_a_dash_and_are_16_random_bytes() -> None:
    ids = [new_cluster_id() for _ in range(2000)]  # ~31 would start with '-' unchecked
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(cluster_id + "==")) == 16 for cluster_id in ids)
