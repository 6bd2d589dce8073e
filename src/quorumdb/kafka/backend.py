"""The broker's view of the node: topics from the controller, partitions as hosted Raft groups.

- Topics: immutable `topic/<name>` records in the controller group (`kafka.metadata`).
  Applying one makes every replica host its partitions' groups (`NodeHost.add_group`); on
  start, the controller's recovered state re-creates them before any log replay reaches them.
- Produce: the leader of a partition's group proposes a `ProduceEntry` carrying its term (the
  leader epoch) and the append time; acks=all answers when the entry applies here (it is
  committed); acks=1 answers once the leader has persisted it (documented as unsafe: a
  failover may drop it); acks=0 answers nothing.
- Consumer groups: a group's coordinator is the leader of the KV shard holding
  `group/<id>`; membership lives in that node's `GroupCoordinator`, committed offsets are KV
  entries in the same shard (so they are replicated and survive coordinator failover). Each
  completed rebalance stores the group (generation, members, assignments) at `group/<id>`
  before the assignment is handed out. A node coordinates a shard's groups for one term of
  its leadership at a time: it first loads the shard's group records behind a read barrier
  of that term (answering NOT_COORDINATOR meanwhile, so clients retry), and drops them when
  the term ends, so a group goes on in its generation with its members across a failover.
- Producer ids: the revision (controller log index) of a write to `producer-id` is unique.
- Whole-cluster metadata: every node reports the partitions it leads to every other node
  (`kafka.leadership`), so Metadata names the leader of a partition this node does not host.
- Catching up: a replica that installed a partition snapshot (a manifest, not the data)
  fetches what it misses from a peer's segments (`kafka.catch_up`); meanwhile it does not
  take leadership from a complete replica, and hands it on if it gets it.
- No event loop needed below the broker's requests: topics, partitions, leadership reports,
  catch-up and coordinator loads run from the host's hooks; produce and topic creation are
  sans-IO calls answering through a `Pending` (`submit_produce`, `submit_create_topic`),
  which the async methods the broker awaits wrap. The simulator drives those directly
  (`sim.kafka_workload`); only client-driven work (group stores, offsets, long polls) awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import msgspec

from quorumdb.aio import wait
from quorumdb.host.group import Group
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.host.pending import Pending
from quorumdb.kafka.broker import PartitionView
from quorumdb.kafka.catch_up import CatchUp, decode_chunk, decode_fetch, encode, serve
from quorumdb.kafka.group_coordinator import (
    GroupCoordinator,
    GroupRecord,
    decode_group_record,
    encode_group_record,
)
from quorumdb.kafka.leadership import (
    LeaderBoard,
    LeaderClaim,
    LeaderReport,
    decode_report,
    encode_report,
)
from quorumdb.kafka.metadata import (
    TOPIC_PREFIX,
    TopicInfo,
    decode_topic,
    encode_topic,
    place_replicas,
    topic_configs,
    validate_topic_name,
)
from quorumdb.kafka.partition import (
    PartitionStateMachine,
    ProduceEntry,
    ProduceResult,
    decode_produce_entry,
    encode_produce_entry,
)
from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kafka.protocol.records import iter_batches, patch_base_offset
from quorumdb.kv.commands import Command, CommandKind, Outcome, Result
from quorumdb.kv.node_kv import kv_state, node_kv
from quorumdb.kv.node_service import NodeService
from quorumdb.kv.service import NotLeaderHereError, ServiceUnavailableError
from quorumdb.raft import EntryType, PlantedBug, ProposalDroppedError, RawNode, Ready
from quorumdb.raft.tracker import ProgressState
from quorumdb.storage.fs import FileSystem, OsFileSystem
from quorumdb.storage.partition_log import PartitionLog

__all__ = ["KafkaBackend"]

log = logging.getLogger("quorumdb.kafka")

_PRODUCER_ID_KEY = b"producer-id"
_GROUP_PREFIX = b"group/"
_OFFSETS_PREFIX = b"offsets/"
_RETENTION_CHECK_MS = 5_000
_TOPIC_SYNC_S_MAX = 1.0  # a Metadata request for an unknown topic waits at most this long
_REPORT_INTERVAL_S = 0.5  # leadership reports go out at least this often...
_REPORT_EXPIRE_S = 10.0  # ...and a node silent for this long is taken to be down
_CATCH_UP_TIMEOUT_S = 3.0  # a segment fetch unanswered this long goes to the next peer
_HAND_OFF_RETRY_S = 1.0  # a leader still missing data asks again to hand leadership on
_LEADERS_CHANNEL = "kafka.leaders"
_FETCH_CHANNEL = "kafka.fetch"
_CHUNK_CHANNEL = "kafka.chunk"


class KafkaBackend:
    """Implements `kafka.broker.BrokerBackend` on top of a `NodeHost`."""

    def __init__(
        self, host: NodeHost, service: NodeService, *, fs: FileSystem | None = None
    ) -> None:
        """`fs`: where partition logs live (default: the OS's; the simulator's disk there)."""
        self.host = host
        self.service = service
        self.node_id = host.config.node_id
        self.cluster_id = host.config.cluster
        self._topics: dict[str, TopicInfo] = {}
        self._fs: FileSystem = fs if fs is not None else OsFileSystem()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._coordinators: dict[int, _Coordination] = {}  # KV shard -> its coordination
        self._group_tasks: set[asyncio.Task[None]] = set()  # group stores in flight
        self._retention_checked_ms = 0
        self._pending_records: dict[int, int] = {}  # proposed, not yet applied (acks=1)
        self._preferred: dict[int, int] = {}  # partition group -> its preferred leader
        self._handed: dict[int, int] = {}  # partition group -> term in which we handed it over
        self._board = LeaderBoard(expire_s=_REPORT_EXPIRE_S)
        self._report_due = True
        self._reported_at = 0.0
        self._leader_waiters: list[asyncio.Future[None]] = []
        # A request lost with a connection is retried elsewhere after `timeout_s`.
        self.catch_up = CatchUp(self._send_fetch, timeout_s=_CATCH_UP_TIMEOUT_S)
        self._handing_off: dict[int, tuple[int, float]] = {}  # group -> (term, asked at)
        self._catching_up: set[int] = set()  # hosted partition groups missing data
        service.kv.controller_observers.append(self._on_controller_command)
        host.after_apply.append(self._after_apply)
        host.tick_hooks.append(self._tick)
        host.metrics_hooks.append(self._gauges)
        host.service_handlers[_LEADERS_CHANNEL] = self._on_report
        host.service_handlers[_FETCH_CHANNEL] = self._on_fetch
        host.service_handlers[_CHUNK_CHANNEL] = self._on_chunk
        self._sync_with_controller_state()

    # -- topics --------------------------------------------------------------------------------

    def _on_controller_command(self, cmd: Command, result: Result) -> None:
        if not cmd.key.startswith(TOPIC_PREFIX) or result.outcome != Outcome.OK:
            return
        if cmd.kind == CommandKind.DELETE:
            self._drop_topic(cmd.key[len(TOPIC_PREFIX) :].decode())
        else:
            self._topic_record(cmd.key, cmd.value, result.revision)

    def _sync_with_controller_state(self) -> None:
        """Make the hosted topics those of the controller's state machine as it is now: at
        start, and after a controller snapshot was installed (a snapshot replaces the state
        without the per-command observer calls, so topics created or deleted in the entries
        it covers would otherwise stay unknown, or hosted, here)."""
        ctl = kv_state(self.host.groups[CONTROLLER_GROUP])
        seen: set[str] = set()
        for key, value, revision in ctl.scan(TOPIC_PREFIX, TOPIC_PREFIX[:-1] + b"0", 1 << 20):
            name = key[len(TOPIC_PREFIX) :].decode()
            seen.add(name)
            known = self._topics.get(name)
            if known is None or known.topic_id != decode_topic(name, value, revision).topic_id:
                if known is not None:  # deleted and re-created while we were behind
                    self._drop_topic(name)
                self._topic_record(key, value, revision)
        for name in sorted(set(self._topics) - seen):
            self._drop_topic(name)

    def _topic_record(self, key: bytes, value: bytes, revision: int) -> None:
        name = key[len(TOPIC_PREFIX) :].decode()
        topic = decode_topic(name, value, revision)
        self._topics[name] = topic
        for p in topic.partitions:
            if self.node_id not in p.replicas:
                continue
            directory = f"{self.host.config.data_dir}/kafka/{name}-{p.partition}-{p.group}"
            sm = PartitionStateMachine(
                PartitionLog(
                    self._fs, directory, segment_bytes_max=int(topic.config("segment.bytes"))
                )
            )
            self._preferred[p.group] = p.replicas[0]
            g = self.host.add_group(p.group, p.replicas, sm)
            if isinstance(g.sm, PartitionStateMachine) and g.sm.missing:
                self._catching_up.add(p.group)

    def _drop_topic(self, name: str) -> None:
        topic = self._topics.pop(name, None)
        if topic is None:
            return
        for p in topic.partitions:
            self.host.remove_group(p.group)
            self.catch_up.forget(p.group)
            self._catching_up.discard(p.group)

    def topics(self) -> dict[str, TopicInfo]:
        return self._topics

    async def sync_topics(self) -> None:
        # A linearizable read of the controller: once it is served here, every topic record
        # committed before it has been applied (and observed by `_on_controller_command`).
        with contextlib.suppress(ServiceUnavailableError):
            await self.service.read_barrier(
                self.host.groups[CONTROLLER_GROUP], timeout_s=_TOPIC_SYNC_S_MAX
            )

    def brokers(self) -> list[tuple[int, str, int]]:
        return [
            (i, m.kafka[0], m.kafka[1])
            for i, m in sorted(self.host.members.items())
            if m.kafka is not None
        ]

    def controller_id(self) -> int:
        lead = self.host.groups[CONTROLLER_GROUP].raw.lead
        return lead if lead else -1

    def now_ms(self) -> int:
        return self.host.env.clock.wall_ms()

    def _in_sync(self, raw: RawNode, follower: int) -> bool:
        """In the ISR: heard from within an election timeout and replicating (not probing).

        Kafka's replica.lag.time.max.ms, scaled to Raft: a follower the leader has lost
        track of, or has not heard from for as long as it takes to elect a new leader, is
        not in sync. (`match >= commit` was no test: commit stalls with the quorum.)
        """
        pr = raw.progress(follower)
        if pr is None or pr.state != ProgressState.REPLICATE:
            return False
        heard = self.host.peer_heard.get(follower)
        cfg = self.host.config
        lag_max_s = cfg.election_ticks * cfg.tick_ms / 1000
        return heard is not None and self.host.env.clock.monotonic() - heard <= lag_max_s

    def partition(self, topic: TopicInfo, index: int) -> PartitionView | None:
        info = topic.partitions[index]
        g = self.host.groups.get(info.group)
        if g is None:
            # Not hosted here: what its leader last reported.
            found = self._board.leader(info.group, self.host.env.clock.monotonic())
            if found is None:
                return None
            node, claim = found
            return PartitionView(
                group=info.group,
                leader=node,
                leader_epoch=claim.epoch,
                is_leader=False,
                replicas=info.replicas,
                isr=tuple(claim.isr),
                high_watermark=-1,
                log_start_offset=-1,
            )
        raw = g.raw
        sm = g.sm
        assert isinstance(sm, PartitionStateMachine)
        isr = self._isr(g)
        leader, epoch = raw.lead, raw.term
        if not leader and (
            found := self._board.leader(info.group, self.host.env.clock.monotonic())
        ):
            # An election is under way here: name the leader that last reported (Kafka's
            # metadata lags the same way; a request to it is refused if it lost the lead).
            leader, epoch = found[0], found[1].epoch
        return PartitionView(
            group=info.group,
            leader=leader or -1,
            leader_epoch=epoch,
            is_leader=raw.is_leader,
            replicas=info.replicas,
            isr=isr,
            high_watermark=sm.high_watermark + self._records_above_commit(info.group),
            log_start_offset=sm.log_start_offset,
        )

    def _records_above_commit(self, group: int) -> int:
        """0; with the planted bug KAFKA_ABOVE_COMMIT, the records it exposes."""
        if PlantedBug.KAFKA_ABOVE_COMMIT not in self.host.planted_bugs:
            return 0
        return sum(
            h.record_count
            for r in self._above_commit(group)
            for h in iter_batches(r, verify_crc=False)
        )

    def _isr(self, g: Group) -> tuple[int, ...]:
        """The leader's in-sync replicas: computed here on the leader, else as it reported."""
        raw = g.raw
        voters = tuple(sorted(g.conf_state.voters))
        if raw.is_leader:
            # A replica still fetching data it missed (see `kafka.catch_up`) has the Raft
            # log but not the records: not in sync, as in Kafka.
            return tuple(
                i
                for i in voters
                if i == self.node_id
                or (self._in_sync(raw, i) and not self._board.catching_up(i, g.group_id))
            )
        found = self._board.leader(g.group_id, self.host.env.clock.monotonic())
        if found is not None and found[0] == raw.lead and found[1].epoch == raw.term:
            return tuple(found[1].isr)
        return voters

    def _gauges(self) -> list[tuple[str, str, str, float]]:
        st = self.catch_up.stats
        return [
            (
                "quorumdb_kafka_partitions_catching_up",
                "Hosted partitions still fetching data from a peer's segments",
                "",
                len(self._catching_up),
            ),
            (
                "quorumdb_kafka_catch_up_bytes_total",
                "Partition data fetched from peers' segments",
                "",
                st.fetched_bytes,
            ),
            (
                "quorumdb_kafka_catch_up_rejected_total",
                "Fetched chunks refused (corrupt, or not fitting the missing range)",
                "",
                st.rejected,
            ),
        ]

    # -- leadership reports ---------------------------------------------------------------------

    def _partition_groups(self) -> list[Group]:
        out = []
        for topic in self._topics.values():
            for p in topic.partitions:
                g = self.host.groups.get(p.group)
                if g is not None:
                    out.append(g)
        return out

    def _report(self, now: float) -> None:
        """Tell every other node which partitions this node leads and which it is still
        catching up."""
        claims = [
            LeaderClaim(group=g.group_id, epoch=g.raw.term, isr=list(self._isr(g)))
            for g in self._partition_groups()
            if g.raw.is_leader
        ]
        report = LeaderReport(
            node=self.node_id, leads=claims, catching_up=sorted(self._catching_up)
        )
        self._board.note(report, now)
        body = encode_report(report)
        for peer in sorted(self.host.members):
            if peer != self.node_id:
                self.host.send_service(peer, _LEADERS_CHANNEL, body)
        self._report_due = False
        self._reported_at = now

    def _on_report(self, sender: int, body: bytes) -> None:
        try:
            report = decode_report(body)
        except msgspec.DecodeError as exc:
            log.warning("bad leadership report from node=%d: %s", sender, exc)
            return
        if report.node != sender:
            log.warning("node=%d sent a report for node=%d; ignored", sender, report.node)
            return
        if self._board.note(report, self.host.env.clock.monotonic()):
            self._wake_leader_waiters()

    def _wake_leader_waiters(self) -> None:
        waiters, self._leader_waiters = self._leader_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def wait_for_leaders(self, timeout_ms: int) -> None:
        """Wait until what this node knows of partition leaders changes (or the timeout)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append(fut)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(fut, timeout_ms / 1000)

    # -- catching up from segments --------------------------------------------------------------

    def _send_fetch(self, peer: int, body: bytes) -> bool:
        return self.host.send_service(peer, _FETCH_CHANNEL, body)

    def _sources(self, g: Group) -> list[int]:
        """Peers to fetch `g`'s missing data from: the leader first, then replicas that
        are not catching up themselves."""
        lead = g.raw.lead
        others = [i for i in sorted(g.conf_state.voters) if i not in (self.node_id, lead)]
        others.sort(key=lambda i: self._board.catching_up(i, g.group_id))
        return ([lead] if lead and lead != self.node_id else []) + others

    def _poll_catch_up(self, now: float) -> None:
        todo: list[tuple[int, PartitionStateMachine, list[int]]] = []
        for gid in sorted(self._catching_up):
            g = self.host.groups.get(gid)
            sm = self._hosted_partition(gid)
            if g is None or sm is None or not sm.missing:
                self._catching_up.discard(gid)
                self._report_due = True
                self.catch_up.finished(gid, now)
                continue
            todo.append((gid, sm, self._sources(g)))
            if g.raw.is_leader:
                self._hand_off_incomplete(g)
        self.catch_up.poll(now, todo)

    def _hosted_partition(self, group: int) -> PartitionStateMachine | None:
        """The state machine of partition group `group` if this node hosts it."""
        g = self.host.groups.get(group)
        return g.sm if g is not None and isinstance(g.sm, PartitionStateMachine) else None

    def _hand_off_incomplete(self, g: Group) -> None:
        """A leader that still misses data hands leadership to a complete replica (asking
        again every `_HAND_OFF_RETRY_S` while it still leads: a transfer whose messages
        were lost is abandoned after an election timeout): readers of the missing offsets
        would otherwise wait for the catch-up."""
        raw = g.raw
        now = self.host.env.clock.monotonic()
        asked = self._handing_off.get(g.group_id)
        if asked is not None and asked[0] == raw.term and now - asked[1] < _HAND_OFF_RETRY_S:
            return  # asked in this term: a transfer takes up to an election timeout
        for peer in sorted(g.conf_state.voters):
            if peer == self.node_id or self._board.catching_up(peer, g.group_id):
                continue
            pr = g.raw.progress(peer)
            if pr is None or not pr.recent_active:
                continue
            self._handing_off[g.group_id] = (raw.term, now)
            log.info("group=%d leader catching up: handing leadership to %d", g.group_id, peer)
            self.host.submit_action(g, functools.partial(RawNode.transfer_leader, transferee=peer))
            return

    def _on_fetch(self, sender: int, body: bytes) -> None:
        try:
            req = decode_fetch(body)
        except msgspec.DecodeError as exc:
            log.warning("bad segment fetch from node=%d: %s", sender, exc)
            return
        sm = self._hosted_partition(req.group)
        self.host.send_service(sender, _CHUNK_CHANNEL, encode(serve(req, sm)))

    def _on_chunk(self, sender: int, body: bytes) -> None:
        try:
            chunk = decode_chunk(body)
        except msgspec.DecodeError as exc:
            log.warning("bad segment chunk from node=%d: %s", sender, exc)
            return
        now = self.host.env.clock.monotonic()
        self.catch_up.on_chunk(sender, chunk, self._hosted_partition(chunk.group), now)
        self._poll_catch_up(now)  # the next request goes out at once

    def submit_create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> Pending[Result]:
        """Propose the topic's record to the controller (from any node: a follower forwards
        it); the answer is its result once applied here (CAS_FAILED: the topic exists).
        Raises `TopicConfigError` for a bad name, count, factor or config."""
        validate_topic_name(name)
        checked = topic_configs(configs)
        members = sorted(self.host.groups[CONTROLLER_GROUP].conf_state.voters)
        replicas = place_replicas(members, partitions, replication_factor, offset=len(self._topics))
        cmd = Command(
            kind=CommandKind.CAS,
            key=TOPIC_PREFIX + name.encode(),
            value=encode_topic(replicas, checked),
            expected_revision=0,
        )
        return self._submit_controller_write(cmd)

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        result = await self._wait_controller(
            self.submit_create_topic(name, partitions, replication_factor, configs)
        )
        if result.outcome == Outcome.CAS_FAILED:
            raise FileExistsError(name)
        # Answer once every partition has a leader known here (reported by the nodes that
        # host it), so the client's next Metadata works.
        deadline = self.host.env.clock.monotonic() + 10
        while self.host.env.clock.monotonic() < deadline:
            topic = self._topics.get(name)
            if topic and all(
                (v := self.partition(topic, p.partition)) is not None and v.leader > 0
                for p in topic.partitions
            ):
                return
            await asyncio.sleep(0.02)

    async def delete_topic(self, name: str) -> None:
        if name not in self._topics:
            raise KeyError(name)
        await self._controller_write(
            Command(kind=CommandKind.DELETE, key=TOPIC_PREFIX + name.encode())
        )

    def _submit_controller_write(self, cmd: Command) -> Pending[Result]:
        return node_kv(self.host).submit_write(self.host.groups[CONTROLLER_GROUP], cmd)

    async def _wait_controller(self, p: Pending[Result]) -> Result:
        try:
            return await wait(p)
        except (ServiceUnavailableError, ProposalDroppedError) as exc:
            raise TimeoutError(str(exc)) from None

    async def _controller_write(self, cmd: Command) -> Result:
        return await self._wait_controller(self._submit_controller_write(cmd))

    async def allocate_producer_id(self) -> int:
        result = await self._controller_write(
            Command(kind=CommandKind.PUT, key=_PRODUCER_ID_KEY, value=b"1")
        )
        return result.revision

    # -- produce and fetch -----------------------------------------------------------------------

    def submit_produce(
        self,
        group: int,
        records: bytes,
        *,
        acks: int,
        timeout_ms: int,
        log_append_time: bool,
    ) -> Pending[ProduceResult]:
        """Propose one produce request's batches on partition group `group`, led here.

        The answer: at once for acks=0; for acks=1 once this leader's own log has it durably
        (unsafe, documented: a failover before the commit may drop it, the record loss the
        kafka-acks lab shows), with the offset it gets if this leader stays leader; for
        acks=all once the entry applies here (it is committed). It fails with LookupError if
        the leader dropped the proposal, TimeoutError after `timeout_ms`.

        Raises:
            LookupError: this node does not lead `group`.
        """
        g = self.host.groups.get(group)
        if g is None or not g.raw.is_leader:
            raise LookupError(group)
        client, seq = self.host.next_request_id()
        entry = ProduceEntry(
            client=client,
            seq=seq,
            leader_epoch=g.raw.term,
            append_time_ms=self.now_ms(),
            log_append_time=log_append_time,
            records=records,
        )
        ack_early = acks == 1 or PlantedBug.KAFKA_ACK_BEFORE_COMMIT in self.host.planted_bugs
        persisted: Pending[None] | None = Pending() if ack_early and acks != 0 else None
        count = sum(h.record_count for h in iter_batches(records, verify_crc=False))
        predicted = self._predict(g, count)
        fut = g.submit((client, seq), encode_produce_entry(entry), persisted)
        fut.add_done_callback(functools.partial(self._settled, g.group_id, count))
        self.host.env.wake()
        answer: Pending[ProduceResult] = Pending()
        if acks == 0:
            answer.set_result(ProduceResult(error=ErrorCode.NONE))
            return answer
        if persisted is not None:

            def durable_here(_: Pending[None]) -> None:
                answer.set_result(
                    ProduceResult(
                        error=ErrorCode.NONE,
                        base_offset=predicted,
                        log_start_offset=self._partition_sm(group).log_start_offset,
                    )
                )

            persisted.add_done_callback(durable_here)
        else:
            fut.add_done_callback(functools.partial(_relay_produce, answer))
        cancel = self.host.env.timers.call_later(
            max(timeout_ms, 1) / 1000, functools.partial(_produce_timed_out, g, fut, answer)
        )
        answer.add_done_callback(lambda _: cancel())
        return answer

    async def produce(
        self, group: int, records: bytes, *, acks: int, timeout_ms: int, log_append_time: bool
    ) -> ProduceResult:
        return await wait(
            self.submit_produce(
                group, records, acks=acks, timeout_ms=timeout_ms, log_append_time=log_append_time
            )
        )

    def _predict(self, g: Group, count: int) -> int:
        """The offset the next proposal of `count` records gets if nothing fails."""
        sm = g.sm
        assert isinstance(sm, PartitionStateMachine)
        pending = self._pending_records.get(g.group_id, 0)
        self._pending_records[g.group_id] = pending + count
        return sm.high_watermark + pending

    def _settled(self, gid: int, count: int, fut: Pending[Any]) -> None:
        left = self._pending_records.get(gid, 0) - count
        self._pending_records[gid] = max(left, 0)

    def read(self, group: int, offset: int, max_bytes: int) -> bytes:
        sm = self._partition_sm(group)
        if PlantedBug.KAFKA_ABOVE_COMMIT in self.host.planted_bugs:
            return self._read_above_commit(group, sm, offset, max_bytes)
        return sm.read(offset, max_bytes)

    def _read_above_commit(
        self, group: int, sm: PartitionStateMachine, offset: int, max_bytes: int
    ) -> bytes:
        """The planted bug KAFKA_ABOVE_COMMIT: serve the local Raft log's produce entries
        beyond what was applied (not committed yet) as if they were the partition's next
        offsets, after the committed batches (tests and planted-bug sweeps only)."""
        hw = sm.high_watermark
        data = sm.read(offset, max_bytes) if offset < hw else b""
        end = offset
        for h in iter_batches(data, verify_crc=False):
            end = h.base_offset + h.record_count
        if end < hw:
            return data  # the committed batches filled `max_bytes`
        out = [data]
        size = len(data)
        base = hw
        for records in self._above_commit(group):
            buf = bytearray(records)
            for h in iter_batches(buf, verify_crc=False):
                if base + h.record_count > offset and size < max_bytes:
                    patch_base_offset(buf, h.position, base)
                    out.append(bytes(buf[h.position : h.end]))
                    size += h.end - h.position
                base += h.record_count
        return b"".join(out)

    def _above_commit(self, group: int) -> list[bytes]:
        """The record batches of the produce entries in this node's Raft log of `group`
        after the applied index (only the planted bug reads them)."""
        g = self.host.groups[group]
        lo = max(g.sm.applied + 1, g.raw.first_index())
        last = g.raw.last_index()
        if lo > last:
            return []
        out = []
        for e in g.raw.log_entries(lo, last + 1):
            if e.type == EntryType.NORMAL and e.data:
                out.append(decode_produce_entry(e.data).records)
        return out

    def _partition_sm(self, group: int) -> PartitionStateMachine:
        sm = self.host.groups[group].sm
        assert isinstance(sm, PartitionStateMachine)
        return sm

    async def wait_for_data(self, groups: list[int], timeout_ms: int) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for gid in groups:
            self._waiters.setdefault(gid, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout_ms / 1000)
        except TimeoutError:
            pass
        finally:
            for gid in groups:
                waiting = self._waiters.get(gid)
                if waiting and fut in waiting:
                    waiting.remove(fut)

    def _after_apply(self, g: Group, rd: Ready, lead_before: int) -> None:
        if g.group_id == CONTROLLER_GROUP and rd.snapshot is not None:
            self._sync_with_controller_state()
        if isinstance(g.sm, PartitionStateMachine):
            if lead_before != g.last_lead:
                self._report_due = True
                self._wake_leader_waiters()
            if rd.snapshot is not None and g.sm.missing:
                self._catching_up.add(g.group_id)
                self._report_due = True
        if g.raw.is_leader:
            self._maybe_hand_to_preferred(g)
        if rd.committed_entries or rd.snapshot is not None:
            for fut in self._waiters.pop(g.group_id, []):
                if not fut.done():
                    fut.set_result(None)
        if lead_before != g.last_lead:
            self._coordination_follows_leadership(g)

    def _maybe_hand_to_preferred(self, g: Group) -> None:
        """Balance leaders: hand a partition to its preferred (first) replica once it has
        caught up, at most once per term (Kafka's preferred leader election)."""
        preferred = self._preferred.get(g.group_id)
        raw = g.raw
        if (
            preferred is None
            or preferred == self.node_id
            or self._handed.get(g.group_id) == raw.term
        ):
            return
        pr = raw.progress(preferred)
        if pr is None or pr.match < raw.last_index() or not pr.recent_active:
            return
        if self._board.catching_up(preferred, g.group_id):
            return  # it has the Raft log, not yet the partition's data
        self._handed[g.group_id] = raw.term
        self.host.submit_action(g, functools.partial(RawNode.transfer_leader, transferee=preferred))

    def offset_for_time(self, group: int, timestamp_ms: int) -> tuple[int, int] | None:
        return self._partition_sm(group).log.offset_for_time(timestamp_ms)

    def end_offset_for_epoch(self, group: int, epoch: int) -> tuple[int, int]:
        return self._partition_sm(group).end_offset_for_epoch(epoch)

    # -- consumer groups -----------------------------------------------------------------------

    def _shard(self, group_id: str) -> Group:
        return self.host.shard_of(_GROUP_PREFIX + group_id.encode())

    def coordinator_for(self, group_id: str) -> int | None:
        lead = self._shard(group_id).raw.lead
        return lead or None

    def is_coordinator(self, group_id: str) -> bool:
        return self._serving(self._shard(group_id)) is not None

    def _coordinator(self, group_id: str) -> GroupCoordinator:
        gc = self._serving(self._shard(group_id))
        assert gc is not None, f"group {group_id!r}: the broker asks is_coordinator first"
        return gc

    def _serving(self, shard: Group) -> GroupCoordinator | None:
        """This node's coordinator of `shard`'s groups, if it may serve them now: it leads the
        shard, and has loaded the shard's group records in its current term. A coordinator
        of an earlier term is dropped (it could hand out member ids and generations its
        successors also gave out); a leader without one starts loading it."""
        raw = shard.raw
        c = self._coordinators.get(shard.group_id)
        if c is not None and (not raw.is_leader or c.term != raw.term):
            del self._coordinators[shard.group_id]
            c.coordinator.drop_all()
            c = None
        if not raw.is_leader:
            return None
        if c is None:
            c = self._start_coordinating(shard)
        return c.coordinator if c.loaded else None

    def _coordination_follows_leadership(self, g: Group) -> None:
        """The leader of `g` changed: drop the coordinator of a shard this node no longer
        leads (its waiting joins and syncs are answered NOT_COORDINATOR), and start loading
        one for a KV shard it now leads, before the first request asks."""
        is_kv_shard = 1 <= g.group_id <= self.host.config.shards
        if g.group_id in self._coordinators or (is_kv_shard and g.raw.is_leader):
            self._serving(g)

    def _start_coordinating(self, shard: Group) -> _Coordination:
        term = shard.raw.term
        # A node leads a group at most once per term: the tag keeps member ids unique.
        id_tag = f"n{self.node_id}g{shard.group_id}t{term}"
        store = functools.partial(self._store_group, shard, term)
        c = _Coordination(term=term, coordinator=GroupCoordinator(id_tag, store))
        self._coordinators[shard.group_id] = c
        self._load_groups(shard, c)
        return c

    def _load_groups(self, shard: Group, c: _Coordination) -> None:
        """Load the shard's group records once every entry committed before this term is
        applied here (a read barrier: the leader has committed an entry of its term)."""
        barrier = self.host.submit_read(shard)
        barrier.add_done_callback(functools.partial(self._groups_readable, shard, c))

    def _groups_readable(self, shard: Group, c: _Coordination, barrier: Pending[int]) -> None:
        error = barrier.exception()
        if error is not None:
            log.info(
                "shard=%d term=%d: group records not loaded (%s)", shard.group_id, c.term, error
            )
            if self._coordinators.get(shard.group_id) is c:
                del self._coordinators[shard.group_id]  # the next request starts over
            return
        raw = shard.raw
        if self._coordinators.get(shard.group_id) is not c or raw.term != c.term:
            return  # the term ended meanwhile
        now = self.now_ms()
        loaded = 0
        for key, value, _ in kv_state(shard).scan(
            _GROUP_PREFIX, _GROUP_PREFIX[:-1] + b"0", 1 << 20
        ):
            try:
                record = decode_group_record(value)
            except ValueError as exc:
                log.error(
                    "shard=%d: %r is not a group record, skipped (%s)", shard.group_id, key, exc
                )
                continue
            c.coordinator.load(record, now)
            loaded += 1
        c.loaded = True
        log.info("shard=%d term=%d: coordinating, %d groups loaded", shard.group_id, c.term, loaded)

    def _store_group(
        self, shard: Group, term: int, record: GroupRecord, done: Callable[[bool], None]
    ) -> None:
        """The coordinators' `Store`: a PUT of `group/<id>` in the shard, proposed at once (so
        records are proposed, and committed, in the order they were made)."""
        self._spawn(self._write_group(shard, term, record, done))

    async def _write_group(
        self, shard: Group, term: int, record: GroupRecord, done: Callable[[bool], None]
    ) -> None:
        what = f"group={record.group_id!r} generation={record.generation}"
        if not shard.raw.is_leader or shard.raw.term != term:
            # A coordinator of an ended term: its record must not land after what its
            # successor loaded.
            log.info("%s: not stored, term %d ended", what, term)
            done(False)
            return
        cmd = Command(
            kind=CommandKind.PUT,
            key=_GROUP_PREFIX + record.group_id.encode(),
            value=encode_group_record(record),
        )
        try:
            await self.service.write(shard, cmd)
        except (NotLeaderHereError, ServiceUnavailableError, ProposalDroppedError) as exc:
            log.info("%s: not stored (%s)", what, exc)
            done(False)
            return
        members = [(m.member_id, m.client_host) for m in record.members]
        log.info("%s stored: leader=%r members=%s", what, record.leader, members)
        done(True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._group_tasks.add(task)
        task.add_done_callback(self._group_task_done)

    def _group_task_done(self, task: asyncio.Task[None]) -> None:
        self._group_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("group coordination task failed", exc_info=task.exception())

    def _tick_coordinators(self, now_ms: int) -> None:
        for shard_id in sorted(self._coordinators):
            gc = self._serving(self.host.groups[shard_id])
            if gc is not None:
                gc.tick(now_ms)

    def _tick(self) -> None:
        mono = self.host.env.clock.monotonic()
        if self._catching_up:
            self._poll_catch_up(mono)
        if self._report_due or mono - self._reported_at >= _REPORT_INTERVAL_S:
            self._report(mono)
        now = self.now_ms()
        self._tick_coordinators(now)
        if now - self._retention_checked_ms >= _RETENTION_CHECK_MS:
            self._retention_checked_ms = now
            self._enforce_retention(now)

    def _enforce_retention(self, now_ms: int) -> None:
        for topic in self._topics.values():
            retention_ms = int(topic.config("retention.ms"))
            retention_bytes = int(topic.config("retention.bytes"))
            for p in topic.partitions:
                g = self.host.groups.get(p.group)
                if g is not None and isinstance(g.sm, PartitionStateMachine):
                    g.sm.enforce_retention(now_ms, retention_ms, retention_bytes)

    def group_join(
        self, req: dict[str, Any], client_host: str, reply: Callable[[dict[str, Any]], None]
    ) -> None:
        self._coordinator(req["group_id"]).join(req, client_host, self.now_ms(), reply)

    def group_sync(self, req: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None:
        self._coordinator(req["group_id"]).sync(req, self.now_ms(), reply)

    def group_heartbeat(self, req: dict[str, Any]) -> ErrorCode:
        return self._coordinator(req["group_id"]).heartbeat(req, self.now_ms())

    def group_leave(self, group_id: str, member_ids: list[str]) -> list[ErrorCode]:
        return self._coordinator(group_id).leave(group_id, member_ids, self.now_ms())

    def group_generation(self, group_id: str, member_id: str) -> int | None:
        return self._coordinator(group_id).generation_of(group_id, member_id)

    def describe_group(self, group_id: str) -> dict[str, Any]:
        return self._coordinator(group_id).describe(group_id)

    def list_groups(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for shard_id in sorted(self._coordinators):
            gc = self._serving(self.host.groups[shard_id])
            if gc is not None:
                out.extend((gid, g.protocol_type) for gid, g in sorted(gc.groups.items()))
        return out

    async def commit_offsets(
        self, group_id: str, offsets: dict[tuple[str, int], tuple[int, str | None]]
    ) -> None:
        shard = self._shard(group_id)
        prefix = _OFFSETS_PREFIX + group_id.encode() + b"/"
        writes = [
            self.service.write(
                shard,
                Command(
                    kind=CommandKind.PUT,
                    key=prefix + f"{topic}/{part}".encode(),
                    value=json.dumps({"offset": off, "metadata": meta}).encode(),
                ),
            )
            for (topic, part), (off, meta) in offsets.items()
        ]
        try:
            await asyncio.gather(*writes)
        except (NotLeaderHereError, ServiceUnavailableError) as exc:
            raise LookupError(str(exc)) from None

    async def fetch_offsets(self, group_id: str) -> dict[tuple[str, int], tuple[int, str | None]]:
        shard = self._shard(group_id)
        try:
            await self.service.read_barrier(shard)
        except ServiceUnavailableError as exc:
            raise LookupError(str(exc)) from None
        prefix = _OFFSETS_PREFIX + group_id.encode() + b"/"
        out: dict[tuple[str, int], tuple[int, str | None]] = {}
        for key, value, _ in kv_state(shard).scan(prefix, prefix[:-1] + b"0", 1 << 20):
            topic, _, part = key[len(prefix) :].decode().rpartition("/")
            info = json.loads(value)
            out[(topic, int(part))] = (int(info["offset"]), info.get("metadata"))
        return out


def _relay_produce(answer: Pending[ProduceResult], applied: Pending[ProduceResult]) -> None:
    error = applied.exception()
    if error is None:
        answer.set_result(applied.result())
    elif isinstance(error, ProposalDroppedError):
        answer.set_exception(LookupError(str(error)))
    else:
        answer.set_exception(error)


def _produce_timed_out(g: Group, applied: Pending[Any], answer: Pending[ProduceResult]) -> None:
    """The produce request's timeout passed: answer TimeoutError and stop waiting for its
    entry (it may still apply later)."""
    if not answer.done():
        g.forget(applied)
        answer.set_exception(TimeoutError())


@dataclass(slots=True)
class _Coordination:
    """This node's coordinator of one KV shard's groups, for one term of its leadership;
    it serves once `loaded` (the shard's group records, read behind a barrier of the term)."""

    term: int
    coordinator: GroupCoordinator
    loaded: bool = False
