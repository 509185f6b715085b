"""A worker's place in its consumer group across restarts and stuck rebalances.

A worker killed by SIGKILL (or out of memory) never says it left: its group
waits out the session timeout before the partitions move, and the restarted
worker joins as a new member beside its dead self (measured with a bare
aiokafka consumer, one member killed and started again: Tansu 11.7 s to be
assigned again, Apache Kafka 5.0 s). So a worker keeps the member id the
coordinator gave it in a file of its own (`MemberRecord`), and a restart with
the same worker id first tells the coordinator that member left
(`leave_on_behalf`): Tansu 3.4 s, Apache Kafka 0.5 s. Static membership
(`group.instance.id`) would do it on Kafka alone; Tansu does not honour it.

`GroupWatch` notices a group that never settles: in it for longer than
`STUCK_AFTER_SESSIONS` session timeouts without being Stable (whatever the
cause, in the broker's coordinator or a member stuck in a rebalance callback),
the worker gives up its consumer so the process can start over (the deployer
restarts it at once; streams.worker).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer
from aiokafka.protocol.admin import DescribeGroupsRequest
from aiokafka.protocol.group import LeaveGroupRequest

log = logging.getLogger(__name__)

GROUP_COORDINATOR = 0
"""aiokafka's coordinator type of a consumer group (1 is a transaction coordinator)."""
STUCK_AFTER_SESSIONS = 4
"""A group not Stable for this many session timeouts is stuck."""
CHECK_EVERY_S = 2.0


class MemberRecord:
    """The member id a worker last had in each of its groups, kept in `path` (one worker
    id's file), so its next process can make its dead predecessor leave."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def previous(self, group: str) -> str | None:
        try:
            member: str | None = json.loads(self.path.read_text()).get(group)
            return member
        except (OSError, ValueError, AttributeError):
            return None

    def remember(self, group: str, member_id: str) -> None:
        self._write(group, member_id)

    def forget(self, group: str) -> None:
        """It left the group properly: nobody needs to leave on its behalf."""
        self._write(group, None)

    def _write(self, group: str, member_id: str | None) -> None:
        try:
            members = json.loads(self.path.read_text()) if self.path.exists() else {}
        except (OSError, ValueError):
            members = {}
        if member_id is None:
            members.pop(group, None)
        else:
            members[group] = member_id
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_suffix(".tmp")
        part.write_text(json.dumps(members))
        os.replace(part, self.path)


async def leave_on_behalf(consumer: AIOKafkaConsumer, group: str, member_id: str) -> None:
    """Tell `group`'s coordinator that `member_id` (a dead process of this worker) left, so the
    group rebalances now instead of after its session timeout. Best effort: on any error the
    group waits the timeout out, as it would have."""
    client = consumer._client
    try:
        coordinator = await client.coordinator_lookup(GROUP_COORDINATOR, group)
        response = await client.send(coordinator, LeaveGroupRequest(group, member_id))
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("could not make the previous member %s leave %s: %r", member_id, group, exc)
        return
    if response.error_code == 0:
        log.info("the previous member %s of this worker left %s", member_id, group)
    elif response.error_code != 25:  # UNKNOWN_MEMBER_ID: its session had expired already
        log.warning("making the previous member %s leave %s: error code %d", member_id, group,
                    response.error_code)


class GroupStuck(Exception):
    """The consumer group did not settle within its bound."""


class GroupWatch:
    """Asks the coordinator how `group` stands every CHECK_EVERY_S; `check()` raises
    GroupStuck once it has not been Stable for `bound_s`."""

    def __init__(self, consumer: AIOKafkaConsumer, group: str, bound_s: float) -> None:
        self._consumer = consumer
        self._group = group
        self._bound_s = bound_s
        self._unsettled_since: float | None = None
        self._checked = 0.0
        self.state = "Unknown"

    async def check(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY_S:
            return
        self._checked = now
        self.state = await self._describe()
        if self.state in ("Stable", "Unknown"):
            self._unsettled_since = None
            return
        if self._unsettled_since is None:
            self._unsettled_since = now
        elif now - self._unsettled_since > self._bound_s:
            raise GroupStuck(f"consumer group {self._group} has been {self.state} for "
                             f"{now - self._unsettled_since:.0f}s (over {self._bound_s:.0f}s)")

    async def _describe(self) -> str:
        client = self._consumer._client
        try:
            coordinator = await client.coordinator_lookup(GROUP_COORDINATOR, self._group)
            response = await client.send(coordinator, DescribeGroupsRequest([self._group]))
            (group, *_) = response.groups
            return str(group[2]) if group[0] == 0 else "Unknown"
        except Exception:  # noqa: BLE001 - unknown is not stuck: the broker may be away
            return "Unknown"
