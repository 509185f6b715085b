"""Partition claims: whether a partition's last reader left it cleanly, so repeats can be marked.

A worker commits a record's offset only once everything it sent for it is
delivered, and at most every `commit_interval_ms` while busy (streams.commits).
A worker that dies (SIGKILL, out of memory, a lost host) leaves what it ran
since its last commit to the partition's next owner, which runs it again: the
result topic then carries a second answer to the same request. Kafka's commit
metadata could say whether an owner left cleanly, but Tansu does not keep it
(it reads back empty), so claims are kept beside the group, in the registry:

- a worker claims the partitions it is assigned before it reads them, and
  releases them once everything it ran is committed (before a rebalance takes
  them, or as it stops);
- a partition still claimed when a worker is assigned it was left by one that
  died (or lost the group) with work that may not be committed: the new owner
  marks every record of it below its end offset at that moment as redelivered
  (streams.messages.REDELIVERED), and the mark goes with the request to its
  result. Until its commit passes them, it does not release the partition
  either (a rebalance may take it first), so whoever reads them next marks
  them too.

So an answer without the mark is the first for its request; a marked one may
repeat an earlier answer with the same request id (or be the first, for a
record that arrived between the crash and the takeover). Consumers that must
not see a repeat drop a marked answer whose request id they have seen.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

from aiokafka import TopicPartition


class PartitionClaims(Protocol):
    """Who reads which partitions of a consumer group (the registry, in practice)."""

    def claim_partitions(self, group: str, owner: str,
                         partitions: Collection[TopicPartition]) -> set[TopicPartition]:
        """Record that `owner` reads `partitions` now; return those that were still claimed
        (their last reader never released them)."""
        ...

    def release_partitions(self, group: str, owner: str,
                           partitions: Collection[TopicPartition]) -> None:
        """`owner` leaves `partitions` with everything it ran committed. A partition another
        reader has claimed since stays claimed."""
        ...
