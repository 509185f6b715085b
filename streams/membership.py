"""A worker's place in its consumer group across restarts and stuck rebalances.

A worker killed by SIGKILL (or out of memory) never says it left: its group
waits out the session timeout before the partitions move, and the restarted
worker joins as a new member beside its dead self. So a worker keeps the
member id the coordinator gave it in a file of its own (`MemberRecord`), and a
restart with the same worker id rejoins as that member (streams.aiokafka_internals.rejoin_as). Measured
with bare aiokafka consumers (two members, one killed and started again, from
its start to its assignment): Tansu 4.2 s -> 3.1 s (Tansu answers every join
after ~3 s; alone in its group the dead member cost 11.7 s), Apache Kafka
5.0 s -> 0.13 s. Telling the coordinator the dead member left (LeaveGroup on
its behalf) did less: 3.4-4.4 s and 0.5-1.0 s, as the group then rebalances
twice. Static membership (`group.instance.id`) would do it on Kafka alone;
Tansu does not honour it.

`JoinWatch` notices a group that never settles: a member that has waited for
its assignment longer than `STUCK_AFTER_SESSIONS` session timeouts (whatever
the cause, in the broker's coordinator or a member stuck in a rebalance
callback) resets the group at the broker where it can (`reset_group`) and
gives up, so its process starts over (streams.loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.protocol.admin import DeleteGroupsRequest, DescribeGroupsRequest

from streams.aiokafka_internals import ask_group_coordinator, member_id, topic_partitions
from streams.clients import connection_options
from streams.settings import WorkerSettings

log = logging.getLogger(__name__)

STUCK_AFTER_SESSIONS = 4
"""A member without an assignment for this many session timeouts is stuck."""
WATCH_EVERY_S = 1.0
"""How often `watch_group` looks at the group and keeps the member id."""


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
        if not members:
            self.path.unlink(missing_ok=True)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        part = self.path.with_suffix(".tmp")
        part.write_text(json.dumps(members))
        os.replace(part, self.path)


class GroupStuck(Exception):
    """The worker has been (re)joining its consumer group for longer than its bound."""


class JoinWatch:
    """How long a member has been (re)joining its group: from the start of a rebalance (or of
    the worker) to its next assignment. `check()` raises GroupStuck past `bound_s`.

    Measured by the member itself, as the coordinator may not say: Tansu described a group
    whose rebalance never ended as "Unknown" (one member was stuck in its revocation
    callback, and Tansu, unlike Apache Kafka, never evicts a member that does not rejoin
    within the rebalance timeout while it heartbeats).
    """

    def __init__(self, group: str, bound_s: float) -> None:
        self._group = group
        self._bound_s = bound_s
        self._since: float | None = time.monotonic()

    def joining(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def joined(self) -> None:
        self._since = None

    @property
    def waiting_s(self) -> float | None:
        """Seconds since this member's rebalance began (None: it has its assignment)."""
        return None if self._since is None else time.monotonic() - self._since

    def check(self) -> None:
        waiting = self.waiting_s
        if waiting is not None and waiting > self._bound_s:
            raise GroupStuck(
                f"no assignment from consumer group {self._group} for "
                f"{waiting:.0f}s (over {self._bound_s:.0f}s): the group never "
                "settled; starting over with a fresh consumer"
            )


Hold = Callable[[list[TopicPartition]], Awaitable[None]]
"""Called with a group's partitions before `reset_group` deletes it; if it raises, the group
is left as it is."""


async def reset_group(
    settings: WorkerSettings, group: str, topics: list[str], hold: Hold | None = None
) -> None:
    """Delete a group that never settles at its coordinator, then commit its offsets of
    `topics` again: its members start over in a fresh group where the old one stopped.

    For Tansu, which kept a group whose rebalance never ended ("Unknown", with members
    that no longer existed) until it restarted: joining it again, as a fresh consumer or as
    the same member, never got an assignment. Apache Kafka refuses to delete a group with
    members (NON_EMPTY_GROUP), and evicts members that do not rejoin in time, so nothing is
    done there. Nobody commits in a group that never settles, so the offsets read before
    the deletion are the group's last.

    The offsets can still be lost: on Tansu a member that rejoined between the deletion and
    the commit had the commit refused (UnknownMemberId), and the group's next readers started
    from the beginning (chaos seed 1208: 4,191 answers repeated without a mark). So at least
    once, `hold` first leaves the partitions claimed (streams.claims), and whoever reads
    them next marks what it reads again as redelivered.
    """
    consumer = AIOKafkaConsumer(
        **connection_options(settings), group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [tp for topic in topics for tp in await topic_partitions(consumer, topic)]
        committed = {tp: await consumer.committed(tp) for tp in partitions}
        state = await _described(consumer, group)
        if hold is not None:
            await hold(partitions)
        response = await ask_group_coordinator(consumer, group, DeleteGroupsRequest([group]))
        ((_, code),) = response.results
        if code != 0:
            log.warning("consumer group %s (%s) was not reset (error code %d)", group, state, code)
            return
        offsets = {tp: offset for tp, offset in committed.items() if offset is not None}
        if offsets:
            consumer.assign(list(offsets))
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:
                log.error(
                    "consumer group %s (%s) was deleted, and its committed offsets could not "
                    "be written again (%r): its next readers start from the beginning%s",
                    group,
                    state,
                    exc,
                    ", marking what they read again" if hold is not None else "",
                )
                return
        log.warning(
            "reset consumer group %s (%s) at the broker, keeping its committed offsets of %d "
            "partitions",
            group,
            state,
            len(offsets),
        )
    except Exception:  # the restart tries again if the group is still stuck
        log.exception("could not reset consumer group %s", group)
    finally:
        await consumer.stop()


async def _described(consumer: AIOKafkaConsumer, group: str) -> str:
    """The group's state and member count as its coordinator describes them, for the log
    (a stuck Tansu group said "Unknown"); never raises."""
    try:
        response = await ask_group_coordinator(consumer, group, DescribeGroupsRequest([group]))
        (described,) = response.groups
        return f"{described[2] or 'no state'}, {len(described[5])} members"
    except Exception as exc:  # only said in the log
        return f"not described: {exc!r}"


async def watch_group(
    consumer: AIOKafkaConsumer,
    watch: JoinWatch,
    members: MemberRecord | None,
    settings: WorkerSettings,
    group: str,
    topics: list[str],
    hold: Hold | None = None,
) -> GroupStuck:
    """Keep `consumer`'s member id in `members` as it changes, until the group is found
    stuck (`watch`): then reset it (`reset_group`, with `hold`) and return why."""
    kept = None
    while True:
        await asyncio.sleep(WATCH_EVERY_S)
        member = member_id(consumer)
        if members is not None and member and member != kept:
            members.remember(group, member)
            kept = member
        try:
            watch.check()
        except GroupStuck as exc:
            log.error("%s", exc)
            await reset_group(settings, group, topics, hold)
            return exc
