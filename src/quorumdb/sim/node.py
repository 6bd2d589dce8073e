"""One simulated node: the real `RawNode` driven by the `raft.ready` contract over virtual I/O.

Theory of operation. A node is single-threaded: it handles one event at a time (a peer message,
a client request, a tick) and then drains the core's Readies. For each Ready it sends the
early messages, hands entries, hard state and snapshot to its `DurableStorage` and saves the
resulting write in the WAL (page cache only), and, when the Ready must be synced, is *busy*
until the simulated fsync completes, which is the WAL's `sync`; only then does it send the
messages that promise durability, apply committed entries, and advance. Events arriving while
busy (or while paused) wait in the inbox, in order.

Storage is the real one (`storage.wal.WAL`, `storage.snapshots.SnapshotStore`,
`storage.durable.DurableStorage` for group 0) over `SimFileSystem(self.disk)`: the WAL in
`<node>/wal`, snapshots in `<node>/snap`. Local snapshots (every `snapshot_every` applied
entries) are written durably at once and compact the WAL.

Ticks come from the node's own clock, which may drift. Before handling any event the node
delivers every tick that is due, so a node waking from a long pause first sees that its
election timeout (and its lease) ran out: time is never frozen by a pause.

A crash loses everything in memory and the disk's unsynced bytes (maybe leaving a torn
record); a restart rebuilds the node from what the disk kept (`WAL.open`). If recovery finds
corruption (`CorruptRecordError`) or an inconsistent log (`DurableStateError`), the node
refuses to start and stays down, as a real node must.
"""

from __future__ import annotations

import contextlib
import random
from collections import deque
from collections.abc import Callable
from typing import Protocol, TypeVar

from quorumdb.raft import (
    Config,
    ConfState,
    EntryType,
    Message,
    PlantedBug,
    ProposalDroppedError,
    RaftError,
    RawNode,
    Ready,
    Rng,
    Snapshot,
    StateType,
)
from quorumdb.raft.codec import decode_conf_change
from quorumdb.sim.client_messages import ClientReply, ClientRequest, Func, ReplyStatus
from quorumdb.sim.clock import NodeClock
from quorumdb.sim.disk import WAL_DIR, SimDisk
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.options import SimOptions
from quorumdb.sim.state_machine import Command, KVStateMachine, Op, decode_command, encode_command
from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL

__all__ = ["NodeHost", "SimNode"]

_SNAP_DIR = "snap"
_GROUP = 0  # the simulated cluster is one Raft group
_PENDING_MAX = 512


class NodeHost(Protocol):
    """What a node needs from the simulation around it."""

    loop: EventLoop

    def send_raft(self, m: Message) -> None: ...

    def reply(self, node: int, reply: ClientReply) -> None: ...

    def on_leader(
        self, node: int, term: int, first: int, last: int, term_at: Callable[[int], int]
    ) -> None: ...

    def on_apply(self, node: int, index: int, term: int, data: bytes) -> None: ...

    def on_violation(self, node: int, message: str) -> None: ...

    def buggify_crash(self, node: int, delay_us: int) -> None: ...


class SimNode:
    def __init__(
        self, host: NodeHost, node_id: int, voters: tuple[int, ...], opts: SimOptions, seed: int
    ) -> None:
        self.host = host
        self.loop = host.loop
        self.id = node_id
        self.voters = voters
        self.opts = opts
        self.rng = random.Random(f"{seed}-node-{node_id}")
        self.disk = SimDisk(f"n{node_id}", random.Random(f"{seed}-disk-{node_id}"))
        self.fs = SimFileSystem(self.disk)
        drift = opts.drift_max
        skew = opts.clock_offset_max_us
        self.clock = NodeClock(
            rate=1.0 + (self.rng.uniform(-drift, drift) if drift else 0.0),
            offset_us=self.rng.randint(-skew, skew) if skew else 0,
        )
        self.up = False
        self.failed_reason: str | None = None
        self.incarnation = 0
        self.paused_until = 0
        self.syncing = False
        self.inbox: deque[tuple[int, object]] = deque()
        self.raw: RawNode | None = None
        self.wal: WAL | None = None  # both exist while the node is up
        self.storage: DurableStorage | None = None
        self.sm = KVStateMachine()
        self.conf_state = ConfState(voters=voters)
        self.applied = 0
        self.snapshot_index = 0
        self.ticks_done = 0
        self.term_led = 0
        self.pending_writes: dict[tuple[int, int], ClientRequest] = {}
        self.pending_reads: dict[bytes, ClientRequest] = {}
        self.waiting_reads: list[tuple[int, ClientRequest]] = []
        self.bug_ack_before_sync = PlantedBug.ACK_BEFORE_SYNC in opts.planted_bugs

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> bool:
        """Boot (or reboot) from disk. False if recovery refused (corruption, inconsistency)."""
        assert not self.up, f"n{self.id} started twice"
        self.incarnation += 1
        try:
            self._recover()
        except DurableStateError as exc:  # CorruptRecordError names the file and the offset
            self.failed_reason = str(exc)
            self.loop.trace(f"n{self.id} refuses to start: {exc}")
            return False
        self.up = True
        self.paused_until = 0
        self.ticks_done = self._ticks_due()
        self._schedule_tick()
        self.loop.trace(
            f"n{self.id} start inc={self.incarnation} applied={self.applied} "
            f"last={self.raw.raft.raft_log.last_index() if self.raw else 0} "
            f"wall={self.clock.wall_us(self.loop.now)}"
        )
        return True

    def crash(self, *, tear: bool) -> None:
        self.loop.trace(f"n{self.id} crash tear={tear}")
        self.up = False  # pending events of this incarnation see `up` false and do nothing
        self.syncing = False
        self.inbox.clear()
        self.raw = None
        self.wal = self.storage = None  # a dead process's files are just gone
        self.pending_writes.clear()
        self.pending_reads.clear()
        self.waiting_reads.clear()
        self.disk.crash(tear=tear)

    def pause(self, duration_us: int) -> None:
        if not self.up:
            return
        self.loop.trace(f"n{self.id} pause {duration_us}")
        self.paused_until = max(self.paused_until, self.loop.now + duration_us)
        self.loop.at(self.paused_until, self._resume, self.incarnation)

    def resume_now(self) -> None:
        """End a pause early (the heal phase)."""
        self.paused_until = self.loop.now
        self.loop.at(self.loop.now, self._resume, self.incarnation)

    def _resume(self, inc: int) -> None:
        if inc != self.incarnation or not self.up or self.loop.now < self.paused_until:
            return
        self.loop.trace(f"n{self.id} resume")
        self._guard(self._pump)

    def _recover(self) -> None:
        snapshots = SnapshotStore(self.fs, self.disk.path(_SNAP_DIR))
        wal, recovered = WAL.open(
            self.fs,
            self.disk.path(WAL_DIR),
            snapshots=snapshots,
            segment_bytes_max=self.opts.wal_segment_bytes_max,
        )
        st = DurableStorage(
            _GROUP,
            wal,
            snapshots,
            recovered.get(_GROUP),
            conf_state=ConfState(voters=self.voters),
        )
        snap = st.snapshot()
        self.wal, self.storage = wal, st
        self.sm = KVStateMachine()
        self.sm.restore(snap.data)
        self.conf_state = st.initial_state()[1]
        self.applied = snap.metadata.index
        self.snapshot_index = snap.metadata.index
        o = self.opts
        cfg = Config(
            id=self.id,
            election_ticks=o.election_ticks,
            heartbeat_ticks=o.heartbeat_ticks,
            applied=self.applied,
            max_size_per_msg=o.max_size_per_msg,
            max_inflight_msgs=o.max_inflight_msgs,
            check_quorum=o.check_quorum,
            pre_vote=o.pre_vote,
            read_only_option=o.read_only,
            snapshot_chunk_bytes=o.snapshot_chunk_bytes,
            planted_bugs=o.planted_bugs,
        )
        rng = random.Random(f"{o.seed}-raft-{self.id}-{self.incarnation}")
        self.raw = RawNode(cfg, st, Rng(rng.randrange))
        self.term_led = 0

    # -- time --------------------------------------------------------------------------------

    def _ticks_due(self) -> int:
        return self.clock.monotonic_us(self.loop.now) // self.opts.tick_us

    def _schedule_tick(self) -> None:
        nxt = self.clock.when_monotonic((self._ticks_due() + 1) * self.opts.tick_us)
        self.loop.at(nxt, self._on_tick, self.incarnation)

    def _on_tick(self, inc: int) -> None:
        if inc != self.incarnation or not self.up:
            return
        self._schedule_tick()
        if self._busy():
            return  # the due ticks are delivered when the node is next free
        self._guard(self._pump)

    def _catch_up_ticks(self) -> None:
        raw = self.raw
        assert raw is not None
        due = self._ticks_due()
        # Bound the catch-up: after a long pause a few election timeouts of ticks say it all.
        n = min(due - self.ticks_done, 4 * self.opts.election_ticks)
        self.ticks_done = due
        for _ in range(n):
            raw.tick()

    # -- event intake ------------------------------------------------------------------------

    def _busy(self) -> bool:
        return self.syncing or self.loop.now < self.paused_until

    def receive(self, kind: int, payload: object) -> None:
        """Entry point for messages (kind 0) and client requests (kind 1)."""
        if not self.up:
            return
        self.inbox.append((kind, payload))
        if not self._busy():
            self._guard(self._pump)

    def _guard(self, fn: Callable[[], None]) -> None:
        """Run `fn`; a failed invariant assertion inside the core is a found bug."""
        try:
            fn()
        except AssertionError as exc:
            self.host.on_violation(self.id, f"invariant assertion failed on n{self.id}: {exc}")
            self.up = False
            self.incarnation += 1

    def _pump(self) -> None:
        raw = self.raw
        assert raw is not None
        while self.up and not self._busy():
            self._catch_up_ticks()
            if raw.has_ready():
                self._handle_ready(raw.ready())
                continue
            if not self.inbox:
                return
            kind, payload = self.inbox.popleft()
            if kind == 0:
                assert isinstance(payload, Message)
                # e.g. a response from a node that is no longer in the configuration
                with contextlib.suppress(RaftError):
                    raw.step(payload)
            else:
                assert isinstance(payload, ClientRequest)
                self._on_client(raw, payload)

    # -- the Ready contract ------------------------------------------------------------------

    def _handle_ready(self, rd: Ready) -> None:
        raw = self.raw
        assert raw is not None
        if rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER:
            self._observe_leader(raw)
        for m in rd.messages:
            self.host.send_raft(m)
        self._persist(rd)
        latency = self.rng.randint(self.opts.fsync_us_min, self.opts.fsync_us_max)
        self._maybe_buggify(rd, latency)
        if rd.must_sync:
            if self.bug_ack_before_sync:
                # The planted driver bug: acknowledge now, let the fsync happen "later".
                self.loop.after(latency, self._lazy_sync, self.incarnation)
            else:
                self.syncing = True
                self.loop.after(latency, self._sync_done, self.incarnation, rd)
                return
        self._finish_ready(rd)

    def _maybe_buggify(self, rd: Ready, latency: int) -> None:
        """Crash at the moments where durability bugs hide (FoundationDB's "buggify").

        During the fsync of a term or vote change (power loss mid-fsync), and on a leader
        right after its commit index advanced (before followers hear of it).
        """
        o = self.opts
        hs = rd.hard_state
        if hs is None:
            return
        raw = self.raw
        assert raw is not None
        roll = self.rng.random()
        if rd.must_sync and (hs.vote or rd.entries) and roll < o.crash_in_sync:
            self.host.buggify_crash(self.id, self.rng.randrange(latency))
        elif raw.is_leader and hs.commit > self.applied and roll < o.crash_after_commit:
            self.host.buggify_crash(self.id, 0)

    def _observe_leader(self, raw: RawNode) -> None:
        r = raw.raft
        if self.term_led == r.term:
            return
        self.term_led = r.term
        log = r.raft_log
        self.loop.trace(f"n{self.id} leader term={r.term} last={log.last_index()}")
        self.host.on_leader(self.id, r.term, log.first_index(), log.last_index(), log.term)

    def _persist(self, rd: Ready) -> None:
        """Hand the Ready to storage; the WAL write sits in the page cache until `_sync`."""
        st, wal = self.storage, self.wal
        assert st is not None
        assert wal is not None
        w = st.persist(rd.entries, rd.hard_state, rd.snapshot)
        if w is not None:
            wal.save([w], sync=False)

    def _sync(self) -> None:
        """The simulated fsync completed: make every saved WAL batch durable."""
        assert self.wal is not None
        self.wal.sync()

    def _sync_done(self, inc: int, rd: Ready) -> None:
        if inc != self.incarnation or not self.up:
            return
        self._sync()
        self.syncing = False
        self._guard(lambda: self._after_sync(rd))

    def _after_sync(self, rd: Ready) -> None:
        self._finish_ready(rd)
        self._pump()

    def _lazy_sync(self, inc: int) -> None:
        if inc == self.incarnation and self.up:
            self._sync()

    def _finish_ready(self, rd: Ready) -> None:
        raw = self.raw
        assert raw is not None
        for m in rd.persisted_messages:
            self.host.send_raft(m)
        self._apply(raw, rd)
        raw.advance(rd)
        self._maybe_snapshot()

    # -- the state machine -------------------------------------------------------------------

    def _apply(self, raw: RawNode, rd: Ready) -> None:
        if rd.snapshot is not None:
            self._install(rd.snapshot)
        host = self.host
        for e in rd.committed_entries:
            host.on_apply(self.id, e.index, e.term, e.data)
            if e.type == EntryType.CONF_CHANGE:
                self.conf_state = raw.apply_conf_change(decode_conf_change(e.data))
            elif e.data:
                self._apply_command(decode_command(e.data))
            self.applied = e.index
        for rs in rd.read_states:
            req = self.pending_reads.pop(rs.request_ctx, None)
            if req is not None:
                self.waiting_reads.append((rs.index, req))
        if self.waiting_reads:
            self._serve_reads()

    def _install(self, snap: Snapshot) -> None:
        self.loop.trace(f"n{self.id} installs snapshot index={snap.metadata.index}")
        self.sm.restore(snap.data)
        self.conf_state = snap.metadata.conf_state
        self.applied = snap.metadata.index
        self.snapshot_index = snap.metadata.index

    def _apply_command(self, cmd: Command) -> None:
        result = self.sm.apply(cmd)
        req = self.pending_writes.pop((cmd.client, cmd.seq), None)
        if req is None or result is None:
            return
        status = ReplyStatus.OK if result else ReplyStatus.FAIL
        self._reply(req, status)

    def _serve_reads(self) -> None:
        still: list[tuple[int, ClientRequest]] = []
        for index, req in self.waiting_reads:
            if index <= self.applied:
                self._reply(req, ReplyStatus.OK, self.sm.read(req.key))
            else:
                still.append((index, req))
        self.waiting_reads = still

    def _maybe_snapshot(self) -> None:
        if self.applied - self.snapshot_index < self.opts.snapshot_every:
            return
        st = self.storage
        assert st is not None
        st.create_snapshot(self.applied, self.conf_state, self.sm.snapshot())
        self.snapshot_index = self.applied
        st.compact(self.opts.snapshot_keep)
        self.loop.trace(f"n{self.id} snapshot index={self.applied}")

    # -- clients -----------------------------------------------------------------------------

    def _on_client(self, raw: RawNode, req: ClientRequest) -> None:
        if req.f == Func.READ:
            ctx = f"{req.client}:{req.seq}:{req.attempt}".encode()
            try:
                raw.read_index(ctx)
            except ProposalDroppedError:
                self._reply(req, ReplyStatus.NOT_LEADER)
                return
            _bounded_put(self.pending_reads, ctx, req)
            return
        if not raw.is_leader:
            self._reply(req, ReplyStatus.NOT_LEADER)
            return
        op = Op.PUT if req.f == Func.WRITE else Op.CAS
        cmd = Command(
            client=req.client,
            seq=req.seq,
            op=op,
            key=req.key,
            value=req.value,
            expected=req.expected,
        )
        try:
            raw.propose(encode_command(cmd))
        except ProposalDroppedError:
            self._reply(req, ReplyStatus.NOT_LEADER)
            return
        _bounded_put(self.pending_writes, (req.client, req.seq), req)

    def _reply(self, req: ClientRequest, status: ReplyStatus, value: int | None = None) -> None:
        raw = self.raw
        hint = raw.lead if raw is not None else 0
        self.host.reply(
            self.id,
            ClientReply(
                client=req.client,
                seq=req.seq,
                attempt=req.attempt,
                status=status,
                value=value,
                leader_hint=hint,
            ),
        )

    def transfer_leader(self, to: int) -> None:
        """Ask this node (if leader) to hand leadership to `to`."""
        if self.up and self.raw is not None and not self._busy():
            self._guard(lambda: self._transfer(to))

    def _transfer(self, to: int) -> None:
        assert self.raw is not None
        self.raw.transfer_leader(to)
        self._pump()

    # -- inspection --------------------------------------------------------------------------

    def log_entries(self) -> list[tuple[int, int, bytes]]:
        st = self.storage
        assert st is not None, f"n{self.id} is down"
        if st.last_index() < st.first_index():
            return []
        ents = st.entries(st.first_index(), st.last_index() + 1, 1 << 62)
        return [(e.index, e.term, e.data) for e in ents]

    @property
    def is_leader(self) -> bool:
        return self.up and self.raw is not None and self.raw.is_leader


_K = TypeVar("_K")
_V = TypeVar("_V")


def _bounded_put(d: dict[_K, _V], key: _K, value: _V) -> None:
    """Insert, evicting the oldest entries beyond `_PENDING_MAX` (their clients time out)."""
    d[key] = value
    while len(d) > _PENDING_MAX:
        del d[next(iter(d))]
