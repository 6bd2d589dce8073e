"""NodeHost: the Raft groups of one node, one WAL, driven synchronously (sans-IO).

Theory of operation. The host is given an environment (`host.env.Env`: a clock, timers, the
network, a syncer that runs the WAL's write + fdatasync somewhere, randomness, and `wake`,
which asks the driver to call `pump()` soon). Two drivers run it: the asyncio runtime
(`runtime.node`) and the simulator (`sim.host_node`). They only deliver inputs (`deliver`,
`tick`, requests through `submit_*`) and call `pump()` when woken; everything else happens
here, identically under both.

A round (`pump` with no write outstanding): (1) hand every group the ticks due by the monotonic
clock (counted here, not from the driver's calls: a process resumed from a pause must see the
time it lost before anything else), queued peer messages, proposals and read requests; (2)
collect a Ready from every group that has one, send their early messages, stage their entries
and hard states, and give the syncer ONE write with ONE fdatasync for all of them (group commit
across groups and requests); (3) when the syncer reports it done (`_on_written`): send the
messages that promise durability, apply committed entries (answering clients), advance,
snapshot. While the write is outstanding, requests and messages keep arriving and queue; the
next round takes them all, so batches grow exactly when the disk is the bottleneck. A round
with nothing to fsync (only a commit index, say) writes inline.

The fsync does not idle the node (etcd's node steps messages and proposals between a Ready
and its Advance too), and the work it does meanwhile goes through the core's one output
channel: KV shards run the core with asynchronous storage writes (`raft.ready`), so their
Readies carry a StorageAppend (written by the next WAL write; its acks, votes and
MsgStorageAppendResp are released or stepped back once that write is durable) and a
StorageApply (committed entries the core knows durable here). The StorageApply is done at
once, even while a write runs; and, for up to a heartbeat interval, KV shards step arriving
append acks and new proposals each time `pump` is called, take the Ready that produces, send
its messages, do its StorageApply and queue its StorageAppend for the next write. After the
interval a leader goes quiet until its write returns, so that a stalled disk costs it its
leadership rather than the group its availability. The controller and Kafka groups run
lock-step (Ready, persist, apply, advance) and wait for the write.

When the mid-flight path runs: acks for entries of an *earlier* write must arrive while a
*later* write is outstanding. A node that leads one shard and follows another writes almost
continuously (the other leader's appends keep its WAL busy), so acks for its own entries
land during its next write: hundreds of entries apply mid-flight. A node that leads every
busy shard writes only its own proposals; under closed-loop clients its next write starts
only after the acks for the previous one came in (they commit and answer the clients who
then send more), so the path never runs. Leadership is settled by the first elections and,
without faults, kept for the cluster's life: hence "hundreds of times or never".

Groups: group 0 is the controller (cluster metadata, including the members and their
addresses, which the host learns from it: `host.state_machine.ControllerStateMachine`),
groups 1..S are shards; a key lives in shard `crc32c(key) % S + 1`. What they replicate is
given by the service that owns them (`host.state_machine.NodeStateMachines`: the KV store,
`kv.node_kv`); the host knows no commands. Every group has every member as a voter
(replication factor = cluster size); Kafka partitions are groups added at run time
(`add_group`) with their own replicas and state machines. (Only the groups whose state
machine `applies_midflight`, the KV store's, do the work while the fsync runs.)

Requests are answered through `host.pending.Pending`; a write is given up
(ServiceUnavailableError) after `request_timeout_s`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import crc32c

from quorumdb.errors import QuorumError, ServiceUnavailableError
from quorumdb.host.config import Member, NodeConfig, parse_address
from quorumdb.host.env import Env, GroupMessageLike
from quorumdb.host.group import Group
from quorumdb.host.metrics import Histogram, render
from quorumdb.host.pending import Pending
from quorumdb.host.persistence import GroupLog, NodeLog
from quorumdb.host.state_machine import (
    ControllerStateMachine,
    NodeStateMachines,
    ReplicatedStateMachine,
)
from quorumdb.raft import (
    Config,
    ConfState,
    EntryType,
    PlantedBug,
    ProposalDroppedError,
    RaftError,
    RawNode,
    ReadOnlyOption,
    Ready,
    Rng,
    StateType,
    StorageAppend,
    StorageApply,
)

__all__ = ["CONTROLLER_GROUP", "InjectedFailureError", "NodeHost"]

log = logging.getLogger("quorumdb.host")

CONTROLLER_GROUP = 0
_SNAPSHOT_KEEP = 1_000
_INFLIGHT_BYTES_MAX = 32 << 20  # unacknowledged entry data per follower, per group
_WAL_CHECK_ROUNDS = 64  # how often (in driver rounds) to look for groups pinning the WAL
_TICKS_PENDING_MAX = 100  # ticks delivered at once after a stall (not more: an election)
# Health calls the driver stalled past this: a round normally ends within a tick (the tick
# loop kicks it) or an fsync; far above both, so a slow disk or a busy machine is not a fault.
_ROUND_AGE_S_MAX = 30.0


class InjectedFailureError(QuorumError):
    """Raised by a driver round on purpose (`NodeHost.fail_driver_after`), to test fail-stop."""


class _Write:
    """The round whose WAL write the syncer is running (or, inline, has just run)."""

    __slots__ = ("appends", "lead_before", "midflight", "readies", "released", "window_end")

    def __init__(
        self,
        readies: list[tuple[Group, Ready]],
        appends: list[tuple[Group, StorageAppend]],
        midflight: list[Group],
        window_end: float,
    ) -> None:
        self.readies = readies
        self.appends = appends  # the KV shards' storage appends in this write, in order
        self.midflight = midflight
        self.window_end = window_end
        self.released = False  # the appends' own responses were stepped (a planted bug)
        self.lead_before: dict[int, int] = {}  # KV shards: the leader before their Ready

    def entries(self) -> int:
        n = sum(len(rd.entries) for _, rd in self.readies)
        return n + sum(len(sa.entries) for _, sa in self.appends)


class NodeHost:
    """One node's groups; inputs from a driver, outputs through its `Env`."""

    def __init__(
        self,
        config: NodeConfig,
        node_log: NodeLog,
        env: Env,
        state_machines: NodeStateMachines,
        *,
        planted_bugs: frozenset[PlantedBug] = frozenset(),
    ) -> None:
        """`state_machines` builds what the controller and the shards replicate (the KV
        store's `kv.node_kv.NodeKV`, which builds the host). `planted_bugs`: known mistakes
        switched back on, for the simulator's checkers to find (never set outside tests and
        planted-bug sweeps)."""
        self.config = config
        self.state_machines = state_machines
        self.planted_bugs = planted_bugs
        self.node_log = node_log
        self.env = env
        self.members: dict[int, Member] = dict(config.members)
        self.groups: dict[int, Group] = {}
        # When each peer's last frame arrived (monotonic s): who is reachable right now, for
        # Kafka's in-sync replica sets. Raft's own recent_active flag is reset every election
        # timeout, so it flickers.
        self.peer_heard: dict[int, float] = {}
        self.logs: dict[int, GroupLog] = {}
        self._ticks_pending = 0
        self._tick_s = config.tick_ms / 1000
        self._ticks_origin = env.clock.monotonic()
        self._ticks_counted = 0
        self._session = env.rng.getrandbits(62) + 1  # request keys: Kafka produce, reads
        self._last_voters: dict[int, set[int]] = {}
        # Extensions (the Kafka backend): called after each group's Ready is applied, with
        # the leader it had before.
        self.after_apply: list[Callable[[Group, Ready, int], None]] = []
        self.tick_hooks: list[Callable[[], None]] = []
        # Services' gauges for /metrics: (name, help, labels, value).
        self.metrics_hooks: list[Callable[[], list[tuple[str, str, str, float]]]] = []
        # Services' own node-to-node messages (`ServiceMessage`), by channel: (sender, body).
        self.service_handlers: dict[str, Callable[[int, bytes], None]] = {}
        self._seq = 0
        self._read_seq = 0
        # Group -> the commit index its own log held when opened during start-up: entries up
        # to it are known committed and are applied before the node serves (`replay_behind`).
        self._replay_to: dict[int, int] = {}
        self._replaying = True
        self.running = False  # set by the driver while it drives this host
        self.failure: BaseException | None = None
        self._injected: InjectedFailureError | None = None
        self._writing: _Write | None = None
        self.rounds = 0
        self._round_at = env.clock.monotonic()
        self._midflight_s = config.heartbeat_ticks * config.tick_ms / 1000
        self.fsync_s = Histogram()
        self.batch_entries = Histogram(bounds=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
        self.request_s: dict[str, Histogram] = {}
        self.requests_total: dict[tuple[str, int], int] = {}
        voters = ConfState(voters=tuple(sorted(config.members)))
        self.controller: ControllerStateMachine = state_machines.open_controller(
            self._apply_member_record
        )
        self._open_group(CONTROLLER_GROUP, voters, self.controller)
        for gid in range(1, config.shards + 1):
            self._open_group(gid, voters, state_machines.open_shard(gid))

    def _open_group(self, gid: int, bootstrap: ConfState, sm: ReplicatedStateMachine) -> Group:
        """Open (recover) one group, replicating into `sm`."""
        c = self.config
        glog = self.node_log.group(gid, bootstrap)
        snap = glog.snapshot()
        sm.restore(snap.data)
        raft_cfg = Config(
            id=c.node_id,
            election_ticks=c.election_ticks,
            heartbeat_ticks=c.heartbeat_ticks,
            applied=snap.metadata.index,
            check_quorum=True,
            pre_vote=c.pre_vote,
            read_only_option=ReadOnlyOption.LEASE_BASED if c.lease_reads else ReadOnlyOption.SAFE,
            lease_drift_ticks=max(1, c.election_ticks // 5),
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
            # Bounds what a leader keeps sending to a follower that does not answer (its
            # appends queue in the transport until it returns): 256 appends of whole Kafka
            # batches could be 256 MiB per group.
            max_inflight_bytes=_INFLIGHT_BYTES_MAX,
            planted_bugs=self.planted_bugs,
            # KV shards overlap work with the WAL's fsync through the core's storage
            # records (`raft.ready`); the controller and Kafka groups run lock-step.
            async_storage_writes=gid != CONTROLLER_GROUP and sm.applies_midflight,
        )
        raw = RawNode(raft_cfg, glog.storage, Rng(self.env.rng.randrange))
        hs, cs = glog.storage.initial_state()
        if self._replaying:
            self._replay_to[gid] = hs.commit
        g = Group(group_id=gid, raw=raw, sm=sm, conf_state=cs, snapshot_index=snap.metadata.index)
        g.on_conf_change = lambda conf, g=g: self._on_conf_change(g, conf)
        self._last_voters[gid] = {*cs.voters, *cs.learners}
        if gid == CONTROLLER_GROUP:
            self._apply_member_records()
        self.groups[gid] = g
        self.logs[gid] = glog
        return g

    def add_group(self, gid: int, voters: tuple[int, ...], sm: ReplicatedStateMachine) -> Group:
        """Host a new (or recovered) group at run time, e.g. a Kafka partition."""
        existing = self.groups.get(gid)
        if existing is not None:
            return existing
        g = self._open_group(gid, ConfState(voters=voters), sm)
        self.env.wake()
        return g

    def remove_group(self, gid: int) -> None:
        """Stop hosting a group (its topic was deleted); its WAL entries are compacted away."""
        g = self.groups.pop(gid, None)
        self.logs.pop(gid, None)
        if g is not None:
            for futs in g.writes.values():
                for fut in futs:
                    fut.set_exception(ProposalDroppedError("group removed"))

    # -- requests (answers come later, as `Pending`) ----------------------------------------

    def submit_write(self, g: Group, key: tuple[int, int], data: bytes) -> Pending[Any]:
        """Propose `data`, the entry of request `key` (client, seq), on `g` (a follower
        forwards it to the leader); the answer is the state machine's result for `key` once
        it applies here, ProposalDroppedError if the core refused it, or
        ServiceUnavailableError after `request_timeout_s`. (The KV store's typed writes:
        `kv.node_kv.NodeKV.submit_write`.)"""
        fut: Pending[Any] = g.submit(key, data)
        self._deadline(g, fut, self.config.request_timeout_s, "the write to commit")
        self.env.wake()
        return fut

    def submit_read(self, g: Group, timeout_s: float | None = None) -> Pending[int]:
        """ReadIndex: answers the index a linearizable read of `g` may be served at, once
        this node has applied it (default deadline: `request_timeout_s`)."""
        self._read_seq += 1
        ctx = f"{self._session}:{self._read_seq}".encode()
        fut = g.submit_read(ctx)
        timeout = self.config.request_timeout_s if timeout_s is None else timeout_s
        self._deadline(g, fut, timeout, "a quorum to confirm the read")
        self.env.wake()
        return fut

    def submit_action(self, g: Group, act: Callable[[RawNode], None]) -> Pending[None]:
        """Run `act(raw)` in the next round (admin: conf changes, leadership transfer)."""
        fut = g.submit_action(act)
        self.env.wake()
        return fut

    def _deadline(self, g: Group, fut: Pending[Any], timeout_s: float, what: str) -> None:
        cancel = self.env.timers.call_later(
            timeout_s, lambda: _time_out(g, fut, f"timed out waiting for {what}")
        )
        fut.add_done_callback(lambda _: cancel())

    def shard_of(self, key: bytes) -> Group:
        return self.groups[crc32c.crc32c(key) % self.config.shards + 1]

    def leader_url(self, g: Group) -> str | None:
        lead = g.raw.lead
        m = self.members.get(lead)
        return m.http_url if m is not None else None

    def next_request_id(self) -> tuple[int, int]:
        """A (client, seq) key no other request of this node uses (Kafka produce requests:
        the partition state machine keeps no KV sessions)."""
        self._seq += 1
        return self._session, self._seq

    # -- inputs from the driver --------------------------------------------------------------

    def deliver(self, sender: int, msgs: Iterable[GroupMessageLike]) -> None:
        """Raft messages from `sender`, each with its group."""
        self.peer_heard[sender] = self.env.clock.monotonic()
        groups = self.groups
        for gm in msgs:
            g = groups.get(gm.group)
            if g is not None:
                g.inbox.append(gm.message)
        self.env.wake()

    def deliver_service(self, sender: int, channel: str, body: bytes) -> None:
        self.peer_heard[sender] = self.env.clock.monotonic()
        handler = self.service_handlers.get(channel)
        if handler is not None:
            handler(sender, body)

    def send_service(self, peer: int, channel: str, body: bytes) -> bool:
        """Send a service's message to `peer` (False: not sent; the service retries)."""
        return self.env.network.send_service(peer, channel, body)

    def tick(self) -> None:
        """A tick interval may have passed: the driver calls this every `tick_ms` or so.
        How many ticks the groups get is the monotonic clock's business (`_count_ticks`)."""
        self._count_ticks()
        for hook in self.tick_hooks:
            hook()
        self.env.wake()

    def pump(self) -> None:
        """Make progress: start a round, or, while its write is outstanding, do the work
        that may happen meanwhile. The driver calls it whenever `env.wake` asked it to;
        an exception means the node has failed (the driver stops it: fail-stop)."""
        if self.failure is not None:
            return
        if self._injected is not None:
            raise self._injected
        if self._writing is not None:
            self._midflight(self._writing)
            return
        self._round()

    def failed(self, error: BaseException) -> None:
        """The driver stopped because of `error`; nothing runs any more (see `health`)."""
        if self.failure is None:
            self.failure = error

    def fail_driver_after(self, delay_s: float) -> None:
        """Make a driver round raise `InjectedFailureError` once `delay_s` has passed (tests of
        fail-stop; see `runtime.node_main`). Uncalled, it costs the driver one test per round."""
        error = InjectedFailureError(f"injected driver failure after {delay_s:g} s")
        self.env.timers.call_later(delay_s, lambda: self._inject(error))

    def _inject(self, error: InjectedFailureError) -> None:
        self._injected = error
        self.env.wake()

    def replay_behind(self) -> list[int]:
        """Groups not yet applied up to the commit index their own log held at start: the
        node should not serve before they are (a restarted node would answer from its
        snapshot's state, e.g. call a long-existing Kafka topic unknown)."""
        return [
            gid
            for gid, g in sorted(self.groups.items())
            if g.sm.applied < self._replay_to.get(gid, 0)
        ]

    def end_replay(self) -> None:
        self._replaying = False
        self._replay_to.clear()

    def health(self) -> dict[str, Any]:
        """Cheap liveness for `/v1/health`: "ok" unless the driver stopped or stalled.

        A group without a leader is counted, not a fault: it happens during every election.
        """
        age_s = self.env.clock.monotonic() - self._round_at
        doc: dict[str, Any] = {
            "status": "ok",
            "driver_running": self.running and self.failure is None,
            "rounds": self.rounds,
            "last_round_age_s": round(age_s, 3),
            "groups": len(self.groups),
            "groups_without_leader": sum(1 for g in self.groups.values() if g.raw.lead == 0),
        }
        if self.failure is not None:
            doc["status"] = "stopped"
            doc["error"] = f"driver stopped: {type(self.failure).__name__}: {self.failure}"
        elif age_s > _ROUND_AGE_S_MAX:
            doc["status"] = "stalled"
            doc["error"] = f"no driver round for {age_s:.0f} s"
        return doc

    # -- the round ---------------------------------------------------------------------------

    def _count_ticks(self) -> None:
        """Add the ticks the monotonic clock says passed since the last count.

        Time is read here, not counted from the driver's calls, and again at the start of
        every round: a process resumed from a pause (SIGSTOP, a long GC stall) handles the
        messages and reads that waited in its sockets before its tick timer fires, and a
        leader must not serve a lease read with the sense of time it had before the pause.
        At most `_TICKS_PENDING_MAX` are delivered at once (enough for any election timeout).
        """
        due = int((self.env.clock.monotonic() - self._ticks_origin) / self._tick_s)
        if due > self._ticks_counted:
            pending = self._ticks_pending + due - self._ticks_counted
            self._ticks_pending = min(pending, _TICKS_PENDING_MAX)
            self._ticks_counted = due

    def _round(self) -> None:
        self._count_ticks()
        ticks, self._ticks_pending = self._ticks_pending, 0
        for g in self.groups.values():
            g.feed(ticks)
        readies = [(g, g.raw.ready()) for g in self.groups.values() if g.raw.has_ready()]
        # KV shards (asynchronous storage writes) may also have appends queued by the work
        # done during the previous write; they go first into this one.
        appends = [(g, sa) for g in self.groups.values() for sa in g.appends]
        if not readies and not appends:
            self._round_ended()
            return
        # The order of `raft.ready.effects()`, split at Persist so that the Persist step of
        # every group shares one WAL write: early sends, persist (all groups, one fdatasync),
        # then sends that promise durability, apply, advance. A KV shard's Ready carries its
        # Persist step as a StorageAppend and its Apply step as a StorageApply (`raft.ready`).
        send = self.env.network.send
        w = _Write(readies, appends, [], 0.0)  # `appends` grows below: this round's too
        for g, rd in readies:
            for m in rd.messages:
                send(g.group_id, m)
            if rd.storage_append is not None:
                appends.append((g, rd.storage_append))
            if g.raw.async_storage_writes:
                w.lead_before[g.group_id] = g.last_lead
                g.take(rd)
                if rd.storage_apply is not None:
                    # Committed entries the core knows durable here since an earlier write:
                    # applied at once, whatever this write holds.
                    self._take_apply(g, rd.storage_apply, writing=True)
        staged: list[object] = []
        sync = False
        ack_early = PlantedBug.ACK_BEFORE_SYNC in self.planted_bugs
        for g, rd in readies:
            if ack_early:  # the planted driver bug: promise durability before the fsync
                for m in rd.persisted_messages:
                    send(g.group_id, m)
            if rd.needs_persist():
                item = self.logs[g.group_id].stage(rd)
                if item is not None:
                    staged.append(item)
                sync = sync or rd.must_sync
        for g, sa in appends:
            g.appends = []
            if ack_early:
                for m in sa.responses:
                    if m.to != self.config.node_id:
                        send(g.group_id, m)
            if sa.needs_write():
                item = self.logs[g.group_id].stage(sa)
                if item is not None:
                    staged.append(item)
                sync = sync or sa.must_sync
        if not staged or not (sync and self.config.fsync):
            # Nothing to fsync (e.g. only a new commit index): a write to the page cache
            # costs less than handing it to the syncer would.
            if staged:
                self.fsync_s.observe(self._commit(staged, False))
                self.batch_entries.observe(w.entries())
            self._finish(w)
            return
        # While the syncer runs the write, each time `pump` is called, the KV shards take
        # append acks and new proposals and do the work their next Readies carry
        # (`_midflight`), for at most a heartbeat interval. Not with lease reads: a read
        # released mid-flight would check its lease against the tick count of the round's
        # start (ticks are not delivered mid-flight). Not for a group whose snapshot waits
        # for the durable commit index to catch up with its applied index, or mid-flight
        # applies could defer the snapshot for ever. Controller and Kafka groups (lock-step
        # Readies) wait for the write.
        w.midflight = [
            g
            for g in self.groups.values()
            if g.raw.async_storage_writes
            and not g.snapshot_deferred
            and not self.config.lease_reads
        ]
        # Only for a heartbeat interval: a leader whose disk stalls must then go quiet, as
        # it would without this, so that its followers elect another leader rather than
        # keep hearing appends from one that cannot commit them.
        w.window_end = self.env.clock.monotonic() + self._midflight_s
        self._writing = w
        self.env.syncer.submit(lambda: self._commit(staged, True), self._on_written)

    def _take_apply(self, g: Group, work: StorageApply, *, writing: bool) -> int:
        """Apply `work` now if allowed, else queue it after the write; entries applied."""
        if writing and (
            g.applies
            or work.snapshot is not None
            or any(e.type == EntryType.CONF_CHANGE for e in work.entries)
        ):
            # In order behind what waits already; configuration changes and snapshots
            # (which the host follows with membership work) wait for the round's end.
            g.applies.append(work)
            return 0
        g.apply_storage(work)
        return len(work.entries)

    def _midflight(self, w: _Write) -> None:
        """While the round's write runs: the KV shards step acks and proposals, send what
        that produces, apply what the core hands to the apply thread (committed and durable
        here) and queue their new appends for the next write."""
        if self.env.clock.monotonic() > w.window_end:
            return
        if PlantedBug.MIDFLIGHT_BEFORE_DURABLE in self.planted_bugs and not w.released:
            # The planted host bug: tell the core that the write in progress is durable
            # before its fsync returns, so that it commits and hands out for applying (and
            # clients are answered) entries not yet durable here.
            w.released = True
            for g, sa in w.appends:
                self._step_own(g, sa)
        send = self.env.network.send
        for g in w.midflight:
            if not g.step_midflight():
                continue
            lead_before = g.last_lead
            rd = g.raw.ready()
            g.take(rd)
            for m in rd.messages:
                send(g.group_id, m)
            if rd.storage_append is not None:
                g.appends.append(rd.storage_append)
            if rd.storage_apply is not None:
                g.stats.midflight_applied += self._take_apply(g, rd.storage_apply, writing=True)
            for hook in self.after_apply:
                hook(g, rd, lead_before)

    def _step_own(self, g: Group, sa: StorageAppend) -> None:
        """Step the responses of a durable StorageAppend addressed to this node."""
        me = self.config.node_id
        for m in sa.responses:
            if m.to == me:
                with contextlib.suppress(RaftError):  # e.g. the group left meanwhile
                    g.raw.step(m)

    def _on_written(self, outcome: float | BaseException) -> None:
        """The syncer finished the round's write: finish the round (on the host's thread)."""
        w = self._writing
        assert w is not None, "a write finished that was not started"
        self._writing = None
        if isinstance(outcome, BaseException):
            raise outcome
        self.fsync_s.observe(outcome)
        self.batch_entries.observe(w.entries())
        self._finish(w)

    def _finish(self, w: _Write) -> None:
        send = self.env.network.send
        me = self.config.node_id
        ack_early = PlantedBug.ACK_BEFORE_SYNC in self.planted_bugs
        for g, sa in w.appends:
            if self.groups.get(g.group_id) is not g:
                continue
            if not ack_early:
                for m in sa.responses:
                    if m.to != me:
                        send(g.group_id, m)
            if not w.released:
                self._step_own(g, sa)
        done: set[int] = set()
        for g, rd in w.readies:
            if g.persist_waiters:
                g.resolve_persisted()
            if self.groups.get(g.group_id) is not g:
                continue  # removed while the controller applied (its topic was deleted)
            lead_before = w.lead_before.get(g.group_id, g.last_lead)
            if g.raw.async_storage_writes:
                self._finish_async(g)
                done.add(g.group_id)
            else:
                if not ack_early:
                    for m in rd.persisted_messages:
                        send(g.group_id, m)
                g.apply(rd)
                g.raw.advance(rd)
            if rd.snapshot is not None and g.group_id == CONTROLLER_GROUP:
                self._sync_members(g)
            for hook in self.after_apply:
                hook(g, rd, lead_before)
            self._after_round(g)
        written = {g.group_id for g, _ in w.appends}
        for gid, g in list(self.groups.items()):
            # KV shards without a Ready this round: their acks were just stepped, or apply
            # work (a configuration change) waited for the write.
            if gid not in done and (gid in written or g.applies):
                self._finish_async(g)
                self._after_round(g)
        if self.rounds % _WAL_CHECK_ROUNDS == 0:
            self._relieve_wal()
        self._round_ended()
        self.env.wake()  # whatever queued meanwhile goes in the next round

    def _finish_async(self, g: Group) -> None:
        """After the write: a KV shard does the apply work that waited for it, then the
        work its responses released at once (entries now durable and committed: the
        lock-step Ready would have applied them in this round too); its new appends queue
        for the next write."""
        applies, g.applies = g.applies, []
        for work in applies:
            g.apply_storage(work)
        if not g.raw.has_ready():
            return
        lead_before = g.last_lead
        rd = g.raw.ready()
        g.take(rd)
        send = self.env.network.send
        for m in rd.messages:
            send(g.group_id, m)
        if rd.storage_append is not None:
            g.appends.append(rd.storage_append)
        if rd.storage_apply is not None:
            g.apply_storage(rd.storage_apply)
        for hook in self.after_apply:
            hook(g, rd, lead_before)

    def _after_round(self, g: Group) -> None:
        g.snapshot_deferred = not self._maybe_snapshot(g, force=g.force_snapshot)
        if not g.snapshot_deferred:
            g.force_snapshot = False

    def _round_ended(self) -> None:
        self.rounds += 1
        self._round_at = self.env.clock.monotonic()

    def _commit(self, staged: list[object], sync: bool) -> float:
        """One WAL write (+ fdatasync), wherever the syncer runs it; returns its duration."""
        started = self.env.clock.monotonic()
        self.node_log.commit(staged, sync=sync)
        return self.env.clock.monotonic() - started

    def _maybe_snapshot(self, g: Group, *, force: bool = False) -> bool:
        """Snapshot `g` if due; False if it had to wait for a later round."""
        applied = g.sm.applied
        due = (
            applied - g.snapshot_index >= self.config.snapshot_entries
            or g.bytes_since_snapshot >= self.config.snapshot_bytes
        )
        if applied <= g.snapshot_index or not (force or due):
            return True
        if applied > self.logs[g.group_id].storage.initial_state()[0].commit:
            # Applied mid-flight past the commit index persisted so far: the next round
            # persists it (a snapshot never gets ahead of the durable commit index).
            return False
        # A forced snapshot (a member joined) compacts fully, so that the newcomer is sent
        # a snapshot whose membership includes it rather than a log that predates it.
        keep = 0 if force else self._entries_to_keep(g, applied)
        self.logs[g.group_id].create_snapshot(applied, g.conf_state, g.sm.snapshot(), keep)
        g.snapshot_index = applied
        g.bytes_since_snapshot = 0
        g.stats.snapshots_made += 1
        return True

    def _entries_to_keep(self, g: Group, applied: int) -> int:
        """How many entries before a snapshot stay in the log, for a follower slightly
        behind: at most `_SNAPSHOT_KEEP`, and at most a quarter of `snapshot_bytes` of data
        (a Kafka partition's entries are whole record batches: 1,000 of 1 MiB would pin a
        GiB in memory)."""
        st = self.logs[g.group_id].storage
        want = min(_SNAPSHOT_KEEP, self.config.snapshot_entries // 2)
        lo = max(st.first_index(), applied - want + 1)
        if lo > applied:
            return 0
        budget = self.config.snapshot_bytes // 4
        keep = 0
        for e in reversed(st.entries(lo, applied + 1, 1 << 62)):
            budget -= len(e.data)
            if budget < 0:
                break
            keep += 1
        return keep

    def _relieve_wal(self) -> None:
        """Snapshot the groups that keep the WAL's oldest segment alive once it has grown
        past a few segments: an idle group whose last entries sit there would otherwise pin
        every later segment, and a busy Kafka partition fills them fast."""
        for gid, index in self.node_log.pinning().items():
            g = self.groups.get(gid)
            if g is None:
                self.node_log.forget(gid)  # a removed group: nothing of it is needed
            elif g.sm.applied >= index and not g.force_snapshot:
                g.force_snapshot = True
                self.env.wake()

    # -- membership ------------------------------------------------------------------------------

    def _on_conf_change(self, g: Group, conf: ConfState) -> None:
        voters = set(conf.voters) | set(conf.learners)
        log.info(
            "group=%d configuration voters=%s learners=%s", g.group_id, conf.voters, conf.learners
        )
        if voters - self._last_voters.get(g.group_id, set()):
            # A newcomer may need a snapshot: one that includes it in the membership.
            g.force_snapshot = True
        self._last_voters[g.group_id] = voters

    def _sync_members(self, g: Group) -> None:
        """Make the known members those of the controller's state after a snapshot install.

        A snapshot replaces the state without the per-command observer calls, so a node
        caught up by snapshot would never dial a node added meanwhile, and keep dialling one
        removed. Members come from records (added nodes) and config files (founders, who
        have none), so a member without a record is dropped only once it is not a voter.
        """
        recorded = self._apply_member_records()
        cs = g.conf_state
        in_group = {*cs.voters, *cs.voters_outgoing, *cs.learners}
        for node_id in sorted(set(self.members) - recorded - in_group):
            self._apply_member_record(node_id, None)

    def _apply_member_records(self) -> set[int]:
        """Learn every member record in the controller's state; return their node ids."""
        records = self.controller.member_records()
        for node_id, value in records.items():
            self._apply_member_record(node_id, value)
        return set(records)

    def _apply_member_record(self, node_id: int, value: bytes | None) -> None:
        """A member record applied (None: deleted): know the member, or forget it."""
        if node_id == self.config.node_id:
            return
        if value is None:
            self.members.pop(node_id, None)
            self.env.network.remove_peer(node_id)
            log.info("member removed id=%d", node_id)
            return
        info = json.loads(value)
        m = Member(
            node_id=node_id,
            raft=parse_address(info["raft"], "member raft"),
            http=parse_address(info["http"], "member http"),
        )
        self.members[node_id] = m
        self.env.network.add_peer(node_id, m.raft)
        log.info("member known id=%d raft=%s http=%s", node_id, info["raft"], info["http"])

    # -- status and metrics ----------------------------------------------------------------------

    def observe_request(self, name: str, status: int, seconds: float) -> None:
        """A served API request, for /metrics."""
        self.request_s.setdefault(name, Histogram()).observe(seconds)
        key = (name, status)
        self.requests_total[key] = self.requests_total.get(key, 0) + 1

    def cluster_status(self) -> dict[str, Any]:
        c = self.config
        groups = []
        for gid, g in sorted(self.groups.items()):
            st = g.raw.status()
            last = st.last_index
            lag = {}
            if g.raw.is_leader:
                for node_id, pr in g.raw.progresses():
                    lag[str(node_id)] = max(0, last - pr.match)
            groups.append(
                {
                    "group": gid,
                    "role": st.soft_state.raft_state.name.lower(),
                    "leader": st.soft_state.lead,
                    "term": st.hard_state.term,
                    "commit": st.hard_state.commit,
                    "applied": g.sm.applied,
                    "last_index": last,
                    "voters": list(g.conf_state.voters),
                    "learners": list(g.conf_state.learners),
                    "follower_lag": lag,
                }
            )
        return {
            "cluster": c.cluster,
            "node_id": c.node_id,
            "fsync": c.fsync,
            "members": [
                {"id": m.node_id, "raft": f"{m.raft[0]}:{m.raft[1]}", "http": m.http_url}
                for _, m in sorted(self.members.items())
            ],
            "groups": groups,
        }

    def metrics_text(self) -> str:
        gauges: list[tuple[str, str, str, float]] = []
        for gid, g in sorted(self.groups.items()):
            st = g.raw.status()
            lab = f'group="{gid}"'
            is_leader = 1.0 if st.soft_state.raft_state == StateType.LEADER else 0.0
            gauges += [
                ("quorumdb_raft_term", "Current Raft term", lab, st.hard_state.term),
                ("quorumdb_raft_is_leader", "1 if this node leads the group", lab, is_leader),
                ("quorumdb_raft_commit_index", "Commit index", lab, st.hard_state.commit),
                ("quorumdb_raft_applied_index", "Applied index", lab, g.sm.applied),
                (
                    "quorumdb_raft_apply_lag",
                    "Committed but not applied entries",
                    lab,
                    st.hard_state.commit - g.sm.applied,
                ),
                (
                    "quorumdb_raft_leader_changes_total",
                    "Leader changes seen",
                    lab,
                    g.stats.leader_changes,
                ),
                ("quorumdb_raft_proposals_total", "Entries proposed", lab, g.stats.proposals),
                (
                    "quorumdb_raft_proposals_dropped_total",
                    "Proposals refused",
                    lab,
                    g.stats.proposals_dropped,
                ),
                ("quorumdb_raft_snapshots_total", "Snapshots made", lab, g.stats.snapshots_made),
                (
                    "quorumdb_raft_snapshots_installed_total",
                    "Snapshots received from a leader and installed",
                    lab,
                    g.stats.snapshots_installed,
                ),
            ]
        for (name, status), n in sorted(self.requests_total.items()):
            gauges.append(
                ("quorumdb_api_requests_total", "API requests", f'op="{name}",status="{status}"', n)
            )
        for hook in self.metrics_hooks:
            gauges += hook()
        hists = [
            ("quorumdb_wal_fsync_seconds", "WAL write+fdatasync latency", "", self.fsync_s),
            ("quorumdb_wal_batch_entries", "Entries per WAL batch", "", self.batch_entries),
        ]
        hists += [
            ("quorumdb_api_request_seconds", "API request latency", f'op="{k}"', h)
            for k, h in sorted(self.request_s.items())
        ]
        return render(gauges, hists)


def _time_out(g: Group, fut: Pending[Any], message: str) -> None:
    """A request's deadline passed: stop waiting (its entry may still apply later)."""
    if not fut.done():
        g.forget(fut)
        fut.set_exception(ServiceUnavailableError(message))
