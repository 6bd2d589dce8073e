"""NodeHost: the Raft groups of one node driven by one asyncio loop, one WAL, one transport.

Theory of operation. One driver task is the only code that calls into the Raft cores. Each
round it (1) hands every group its due ticks, queued peer messages, proposals and read
requests, (2) collects a Ready from every group that has one, sends their early messages,
stages their entries and hard states, and commits all of them with ONE write and ONE
fdatasync in a worker thread (group commit across groups and across requests), then (3) sends
the messages that promise durability, applies committed entries (answering clients), and
advances. While the fsync runs, requests and messages keep arriving and queue up; the next
round takes them all, so batches grow exactly when the disk is the bottleneck. The simulator
(`sim/node.py`) checks this persist-before-acknowledge model in its lock-step form; the
mid-flight work below is covered by the in-process and real-process tests only.

Fail-stop. The driver and tick loops are the node: if either raises, the other is stopped,
the error is logged once with its traceback, `failure` holds it and `wait_failed()` returns
it; `/v1/health` answers 503 from then on. The process's main (`runtime.node_main`) waits for
that and exits, so a node never keeps listening while nothing is replicated or applied.

The fsync does not idle the node (etcd's node steps messages and proposals between a Ready
and its Advance too): while it runs, groups whose committed entries were persisted by
earlier rounds apply them and answer their clients at once; and, for up to a heartbeat
interval, KV groups step arriving append acks and new proposals, send the appends and
commit indexes that produces, and apply newly committed entries that are durable here
(`RawNode.take_committed`). What promises durability (acks, votes) still waits for the
write. After the interval a leader goes quiet until its write returns, so that a stalled
disk costs it its leadership rather than the group its availability.

Clients talk HTTP/1.1 to `runtime.http` (a lean asyncio.Protocol server) running
`kv.api.dispatch`.

Groups: group 0 is the controller (cluster metadata: members and their addresses, as KV
entries), groups 1..S hold KV shards; a key lives in shard `crc32c(key) % S + 1`. Every group
has every member as a voter (replication factor = cluster size).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import crc32c

from quorumdb.errors import QuorumError
from quorumdb.host.config import Member, NodeConfig, parse_address
from quorumdb.host.group import Group
from quorumdb.host.metrics import Histogram, render
from quorumdb.host.pending import Pending
from quorumdb.host.persistence import GroupLog, NodeLog
from quorumdb.host.state_machine import ReplicatedStateMachine
from quorumdb.kv.api import BODY_BYTES_MAX, dispatch
from quorumdb.kv.commands import Command, CommandKind, Outcome, Result, encode_command
from quorumdb.kv.service import (
    Consistency,
    NotLeaderHereError,
    ServiceUnavailableError,
    ValueRecord,
)
from quorumdb.kv.sessions import SessionPool
from quorumdb.kv.state_machine import KVStateMachine
from quorumdb.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    Config,
    ConfState,
    EntryType,
    ProposalDroppedError,
    RawNode,
    ReadOnlyOption,
    Ready,
    Rng,
    StateType,
)
from quorumdb.runtime.http import HttpServer
from quorumdb.runtime.pending import wait
from quorumdb.runtime.transport import Transport
from quorumdb.runtime.wire import GroupMessage, ServiceMessage

__all__ = ["CONTROLLER_GROUP", "InjectedFailureError", "NodeHost"]

log = logging.getLogger("quorumdb.host")

_T = TypeVar("_T")

CONTROLLER_GROUP = 0
_MEMBER_PREFIX = b"member/"
_MEMBER_END = b"member0"
_ADMIN_TIMEOUT_S = 30.0
_TICK_CATCH_UP_MAX = 100
_SNAPSHOT_KEEP = 1_000
_REPLAY_WAIT_S_MAX = 30.0
_INFLIGHT_BYTES_MAX = 32 << 20  # unacknowledged entry data per follower, per group
_WAL_CHECK_ROUNDS = 64  # how often (in driver rounds) to look for groups pinning the WAL
# Health calls the driver stalled past this: a round normally ends within a tick (the tick
# loop kicks it) or an fsync; far above both, so a slow disk or a busy machine is not a fault.
_ROUND_AGE_S_MAX = 30.0


class InjectedFailureError(QuorumError):
    """Raised by a driver round on purpose (`NodeHost.fail_driver_after`), to test fail-stop."""


class NodeHost:
    """A running node; implements `kv.service.KVService` for the HTTP API."""

    def __init__(self, config: NodeConfig, node_log: NodeLog) -> None:
        self.config = config
        self.node_log = node_log
        self.rng = random.Random()
        self.members: dict[int, Member] = dict(config.members)
        self.groups: dict[int, Group] = {}
        # When each peer's last frame arrived (monotonic s): who is reachable right now, for
        # Kafka's in-sync replica sets. Raft's own recent_active flag is reset every election
        # timeout, so it flickers.
        self.peer_heard: dict[int, float] = {}
        self.logs: dict[int, GroupLog] = {}
        self._kick = asyncio.Event()
        self._ticks_pending = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._http: HttpServer | None = None
        self._session = self.rng.getrandbits(62) + 1  # request keys: Kafka produce, reads
        # Sessions for writes that come without one (the node's own, clients without ids).
        self.sessions = SessionPool(self.rng)
        self._last_voters: dict[int, set[int]] = {}
        # Extensions (the Kafka backend): called after each group's Ready is applied, with
        # the leader it had before; and for every applied controller command.
        self.after_apply: list[Callable[[Group, Ready, int], None]] = []
        self.controller_observers: list[Callable[[Command, Result], None]] = []
        self.tick_hooks: list[Callable[[], None]] = []
        # Services' gauges for /metrics: (name, help, labels, value).
        self.metrics_hooks: list[Callable[[], list[tuple[str, str, str, float]]]] = []
        # Services' own node-to-node messages (`ServiceMessage`), by channel: (sender, body).
        self.service_handlers: dict[str, Callable[[int, bytes], None]] = {}
        self._seq = 0
        self._read_seq = 0
        # Group -> the commit index its own log held when opened during start-up: entries up
        # to it are known committed and are applied before the node serves (see `start`).
        self._replay_to: dict[int, int] = {}
        self._replaying = True
        self._round_done = asyncio.Event()
        self._running = False
        self.failure: BaseException | None = None
        self._failed = asyncio.Event()
        self._injected: InjectedFailureError | None = None
        self.rounds = 0
        self._round_at = time.monotonic()
        # The WAL write of the latest round: `stop` lets it finish before closing the WAL.
        self._wal_write: asyncio.Future[float] | None = None
        self._midflight_s = config.heartbeat_ticks * config.tick_ms / 1000
        self.fsync_s = Histogram()
        self.batch_entries = Histogram(bounds=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096))
        self.request_s: dict[str, Histogram] = {}
        self.requests_total: dict[tuple[str, int], int] = {}
        self.transport = Transport(
            node_id=config.node_id,
            cluster=config.cluster,
            listen=config.me.raft,
            peers={i: m.raft for i, m in config.members.items() if i != config.node_id},
            deliver=self._deliver,
            rng=random.Random(),
            deliver_service=self._deliver_service,
        )
        voters = ConfState(voters=tuple(sorted(config.members)))
        for gid in range(config.shards + 1):
            self._open_group(gid, voters)

    def _open_group(
        self, gid: int, bootstrap: ConfState, sm: ReplicatedStateMachine | None = None
    ) -> Group:
        """Open (recover) one group; `sm` defaults to a KV state machine."""
        c = self.config
        glog = self.node_log.group(gid, bootstrap)
        snap = glog.snapshot()
        if sm is None:
            observer = self._on_controller_command if gid == CONTROLLER_GROUP else None
            sm = KVStateMachine(observer)
        sm.restore(snap.data)
        raft_cfg = Config(
            id=c.node_id,
            election_ticks=c.election_ticks,
            heartbeat_ticks=c.heartbeat_ticks,
            applied=snap.metadata.index,
            check_quorum=True,
            pre_vote=True,
            read_only_option=ReadOnlyOption.LEASE_BASED if c.lease_reads else ReadOnlyOption.SAFE,
            lease_drift_ticks=max(1, c.election_ticks // 5),
            max_size_per_msg=1 << 20,
            max_inflight_msgs=256,
            # Bounds what a leader keeps sending to a follower that does not answer (its
            # appends queue in the transport until it returns): 256 appends of whole Kafka
            # batches could be 256 MiB per group.
            max_inflight_bytes=_INFLIGHT_BYTES_MAX,
        )
        raw = RawNode(raft_cfg, glog.storage, Rng(random.Random().randrange))
        hs, cs = glog.storage.initial_state()
        if self._replaying:
            self._replay_to[gid] = hs.commit
        g = Group(group_id=gid, raw=raw, sm=sm, conf_state=cs, snapshot_index=snap.metadata.index)
        g.on_conf_change = lambda conf, g=g: self._on_conf_change(g, conf)
        if gid == CONTROLLER_GROUP and isinstance(sm, KVStateMachine):
            self._apply_member_records(sm)
        self.groups[gid] = g
        self.logs[gid] = glog
        return g

    def add_group(self, gid: int, voters: tuple[int, ...], sm: ReplicatedStateMachine) -> Group:
        """Host a new (or recovered) group at run time, e.g. a Kafka partition."""
        existing = self.groups.get(gid)
        if existing is not None:
            return existing
        g = self._open_group(gid, ConfState(voters=voters), sm)
        self._kick.set()
        return g

    def remove_group(self, gid: int) -> None:
        """Stop hosting a group (its topic was deleted); its WAL entries are compacted away."""
        g = self.groups.pop(gid, None)
        self.logs.pop(gid, None)
        if g is not None:
            for futs in g.writes.values():
                for fut in futs:
                    if not fut.done():
                        fut.set_exception(ProposalDroppedError("group removed"))

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        await self.transport.start()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._tick_loop(), name="tick loop"),
            loop.create_task(self._driver_loop(), name="driver"),
        ]
        for t in self._tasks:
            t.add_done_callback(self._on_loop_done)
        await self._replay_committed()
        self._http = HttpServer(functools.partial(dispatch, self), body_bytes_max=BODY_BYTES_MAX)
        host, port = self.config.me.http
        await self._http.start(host, port)
        log.info(
            "node started id=%d raft=%s:%d http=%s:%d groups=%d fsync=%s",
            self.config.node_id,
            *self.config.me.raft,
            host,
            port,
            len(self.groups),
            self.config.fsync,
        )

    async def _replay_committed(self) -> None:
        """Apply what this node's own log already holds as committed before serving.

        A restarted node knows its commit index from its hard state, so it can apply up to
        it without hearing from any leader. Serving earlier answered from the snapshot's
        state: a Kafka Metadata request right after a restart called a topic created long
        before unknown (error 3) until the first driver round had replayed the controller
        log. Partition groups that the replay re-creates are waited for too. Bounded: a log
        that cannot reach its commit index (it never should) only delays the start.
        """
        deadline = time.monotonic() + _REPLAY_WAIT_S_MAX
        while behind := [
            gid
            for gid, g in sorted(self.groups.items())
            if g.sm.applied < self._replay_to.get(gid, 0)
        ]:
            if self.failure is not None:
                break  # the owner shuts the node down
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                log.warning("serving before replaying the committed log of groups=%s", behind)
                break
            self._round_done.clear()
            self._kick.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._round_done.wait(), left_s)
        self._replaying = False
        self._replay_to.clear()

    async def stop(self) -> None:
        self._running = False
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.stop()
        await self.transport.stop()
        if self._wal_write is not None:
            # Its thread outlives a cancelled or failed round: close the WAL after it.
            await asyncio.wait([self._wal_write])
        self.node_log.close()

    def _on_loop_done(self, task: asyncio.Task[None]) -> None:
        """The driver or tick loop ended: unless cancelled by `stop`, the node has failed."""
        if task.cancelled():
            return
        exc = task.exception()
        assert exc is not None, f"the {task.get_name()} returned"
        log.error("%s failed; stopping the node", task.get_name(), exc_info=exc)
        if self.failure is None:
            self.failure = exc
            self._failed.set()
            self._round_done.set()  # wakes `_replay_committed`, which then sees the failure
        for t in self._tasks:
            t.cancel()

    async def wait_failed(self) -> BaseException:
        """Wait until the driver or tick loop fails; return what stopped it. The node is then
        fail-stop: it neither replicates nor applies, and its owner should shut it down."""
        await self._failed.wait()
        assert self.failure is not None
        return self.failure

    def fail_driver_after(self, delay_s: float) -> None:
        """Make a driver round raise `InjectedFailureError` once `delay_s` has passed (tests of
        fail-stop; see `runtime.node_main`). Uncalled, it costs the driver one test per round."""
        error = InjectedFailureError(f"injected driver failure after {delay_s:g} s")
        asyncio.get_running_loop().call_later(delay_s, self._inject, error)

    def _inject(self, error: InjectedFailureError) -> None:
        self._injected = error
        self._kick.set()

    def health(self) -> dict[str, Any]:
        """Cheap liveness for `/v1/health`: "ok" unless the driver stopped or stalled.

        A group without a leader is counted, not a fault: it happens during every election.
        """
        age_s = time.monotonic() - self._round_at
        doc: dict[str, Any] = {
            "status": "ok",
            "driver_running": self._running and self.failure is None,
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

    # -- the driver ----------------------------------------------------------------------------

    def _deliver(self, sender: int, msgs: list[GroupMessage]) -> None:
        self.peer_heard[sender] = time.monotonic()
        groups = self.groups
        for gm in msgs:
            g = groups.get(gm.group)
            if g is not None:
                g.inbox.append(gm.message)
        self._kick.set()

    def _deliver_service(self, sender: int, msg: ServiceMessage) -> None:
        self.peer_heard[sender] = time.monotonic()
        handler = self.service_handlers.get(msg.channel)
        if handler is not None:
            handler(sender, msg.body)

    def send_service(self, peer: int, channel: str, body: bytes) -> bool:
        """Send a service's message to `peer` (False: not sent; the service retries)."""
        return self.transport.send_service(peer, ServiceMessage(channel=channel, body=body))

    async def _tick_loop(self) -> None:
        interval = self.config.tick_ms / 1000
        started = time.monotonic()
        done = 0
        while True:
            await asyncio.sleep(interval)
            # Deliver every tick that is due by the monotonic clock, even after a stall.
            due = int((time.monotonic() - started) / interval)
            self._ticks_pending += min(due - done, _TICK_CATCH_UP_MAX)
            done = due
            for hook in self.tick_hooks:
                hook()
            self._kick.set()

    async def _driver_loop(self) -> None:
        """Run rounds until cancelled; an error ends it (and `_on_loop_done` fails the node)."""
        while True:
            await self._kick.wait()
            self._kick.clear()
            if self._injected is not None:
                raise self._injected
            await self._round()
            self.rounds += 1
            self._round_at = time.monotonic()
            self._round_done.set()

    async def _round(self) -> None:
        ticks, self._ticks_pending = self._ticks_pending, 0
        for g in self.groups.values():
            g.feed(ticks)
        readies = [(g, g.raw.ready()) for g in self.groups.values() if g.raw.has_ready()]
        if not readies:
            return
        # The order of `raft.ready.effects()`, split at Persist so that the Persist step of
        # every group shares one WAL write: early sends, persist (all groups, one fdatasync),
        # then sends that promise durability, apply, advance.
        send = self.transport.send
        staged: list[object] = []
        sync = False
        for g, rd in readies:
            for m in rd.messages:
                send(g.group_id, m)
            if rd.needs_persist():
                item = self.logs[g.group_id].stage(rd)
                if item is not None:
                    staged.append(item)
                sync = sync or rd.must_sync
        # While the WAL write runs in its thread: first apply the groups whose committed
        # entries are all durable here already (persisted by earlier rounds), as
        # `_early_apply` checks; then, each time something arrives, let the KV groups take
        # append acks and new proposals, send what that produces and apply what commits
        # (`Group.step_midflight`), for at most a heartbeat interval. Kafka groups wait for
        # the next round.
        early: dict[int, int] = {}
        if staged:
            loop = asyncio.get_running_loop()
            if sync and self.config.fsync:
                commit = loop.run_in_executor(None, self._commit, staged, True)
                commit.add_done_callback(self._kick_cb)
            else:
                # Nothing to fsync (e.g. only a new commit index): a write to the page cache
                # costs less than the two thread hand-offs would.
                commit = loop.create_future()
                commit.set_result(self._commit(staged, False))
            self._wal_write = commit
            for g, rd in readies:
                if _early_apply(g, rd):
                    early[g.group_id] = g.last_lead
                    g.apply(rd)
            # Groups with committed entries still to apply after the write: nothing of theirs
            # may be applied before those.
            pending = {
                g.group_id
                for g, rd in readies
                if (rd.committed_entries or rd.snapshot is not None) and g.group_id not in early
            }
            # Not with lease reads: a read released mid-flight would check its lease against
            # the tick count of the round's start (ticks are not delivered mid-flight). Not
            # for a group whose snapshot waits for the durable commit index to catch up with
            # its applied index, or mid-flight applies could defer the snapshot for ever.
            midflight = [
                g
                for g in self.groups.values()
                if g.group_id not in pending
                and isinstance(g.sm, KVStateMachine)
                and not g.snapshot_deferred
                and not self.config.lease_reads
            ]
            kick = self._kick
            # Only for a heartbeat interval: a leader whose disk stalls must then go quiet, as
            # it would without this, so that its followers elect another leader rather than
            # keep hearing appends from one that cannot commit them.
            window_end = loop.time() + self._midflight_s
            while not commit.done():
                kick.clear()
                await kick.wait()
                if commit.done():
                    break
                if loop.time() > window_end:
                    # Shielded: cancelling the round must not lose track of the write.
                    await asyncio.shield(commit)
                    break
                for g in midflight:
                    if g.step_midflight():
                        for m in g.raw.take_messages():
                            send(g.group_id, m)
            self.fsync_s.observe(commit.result())
            self.batch_entries.observe(sum(len(rd.entries) for _, rd in readies))
        for g, rd in readies:
            if g.persist_waiters:
                g.resolve_persisted()
            if self.groups.get(g.group_id) is not g:
                continue  # removed while the controller applied (its topic was deleted)
            for m in rd.persisted_messages:
                send(g.group_id, m)
            lead_before = early.get(g.group_id)
            if lead_before is None:
                lead_before = g.last_lead
                g.apply(rd)
            g.raw.advance(rd)
            if rd.snapshot is not None and g.group_id == CONTROLLER_GROUP:
                self._sync_members(g)
            for hook in self.after_apply:
                hook(g, rd, lead_before)
            g.snapshot_deferred = not self._maybe_snapshot(g, force=g.force_snapshot)
            if not g.snapshot_deferred:
                g.force_snapshot = False
        if self.rounds % _WAL_CHECK_ROUNDS == 0:
            self._relieve_wal()
        self._kick.set()

    def _kick_cb(self, _: object) -> None:
        self._kick.set()

    def _commit(self, staged: list[object], sync: bool) -> float:
        """One WAL write (+ fdatasync), in a worker thread; returns its duration."""
        started = time.perf_counter()
        self.node_log.commit(staged, sync=sync)
        return time.perf_counter() - started

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
                self._kick.set()

    # -- membership ------------------------------------------------------------------------------

    def _on_conf_change(self, g: Group, conf: ConfState) -> None:
        voters = set(conf.voters) | set(conf.learners)
        log.info(
            "group=%d configuration voters=%s learners=%s", g.group_id, conf.voters, conf.learners
        )
        if voters - self._last_voters.get(g.group_id, voters):
            g.force_snapshot = True
        self._last_voters[g.group_id] = voters

    def _on_controller_command(self, cmd: Command, result: Result) -> None:
        for observer in self.controller_observers:
            observer(cmd, result)
        if not cmd.key.startswith(_MEMBER_PREFIX):
            return
        if cmd.kind == CommandKind.DELETE:
            # Founding members have no record to delete (they come from the config files).
            self._apply_member_record(cmd.key, None)
        elif result.outcome == Outcome.OK:
            self._apply_member_record(cmd.key, cmd.value)

    def _sync_members(self, g: Group) -> None:
        """Make the known members those of the controller's state after a snapshot install.

        A snapshot replaces the state without the per-command observer calls, so a node
        caught up by snapshot would never dial a node added meanwhile, and keep dialling one
        removed. Members come from records (added nodes) and config files (founders, who
        have none), so a member without a record is dropped only once it is not a voter.
        """
        sm = g.sm
        assert isinstance(sm, KVStateMachine)
        recorded = self._apply_member_records(sm)
        cs = g.conf_state
        in_group = {*cs.voters, *cs.voters_outgoing, *cs.learners}
        for node_id in sorted(set(self.members) - recorded - in_group):
            self._apply_member_record(_member_key(node_id), None)

    def _apply_member_records(self, sm: KVStateMachine) -> set[int]:
        """Learn every member record in the controller's state; return their node ids."""
        recorded = set()
        for key, value, _ in sm.scan(_MEMBER_PREFIX, _MEMBER_END, 10_000):
            recorded.add(int(key[len(_MEMBER_PREFIX) :]))
            self._apply_member_record(key, value)
        return recorded

    def _apply_member_record(self, key: bytes, value: bytes | None) -> None:
        node_id = int(key[len(_MEMBER_PREFIX) :])
        if node_id == self.config.node_id:
            return
        if value is None:
            self.members.pop(node_id, None)
            self.transport.remove_peer(node_id)
            log.info("member removed id=%d", node_id)
            return
        info = json.loads(value)
        m = Member(
            node_id=node_id,
            raft=parse_address(info["raft"], "member raft"),
            http=parse_address(info["http"], "member http"),
        )
        self.members[node_id] = m
        self.transport.add_peer(node_id, m.raft)
        log.info("member known id=%d raft=%s http=%s", node_id, info["raft"], info["http"])

    async def _act(self, g: Group, act: Callable[[RawNode], None]) -> None:
        fut = g.submit_action(act)
        self._kick.set()
        try:
            await wait(fut)
        except ProposalDroppedError as exc:
            raise ServiceUnavailableError(f"group {g.group_id}: {exc}") from None

    async def _until(self, cond: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def _change(self, g: Group, change: ConfChangeSingle) -> None:
        """Propose one simple membership change on `g` and wait until it applies here."""
        want_in = change.type != ConfChangeType.REMOVE_NODE
        node_id = change.node_id
        deadline = time.monotonic() + _ADMIN_TIMEOUT_S

        def done() -> bool:
            return (node_id in g.conf_state.voters) == want_in

        while not done():
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"group {g.group_id}: {change} did not apply")
            cc = ConfChange(changes=(change,))
            with contextlib.suppress(ServiceUnavailableError):
                await self._act(g, functools.partial(RawNode.propose_conf_change, cc=cc))
            # Refused (another change pending), dropped or lost: look again, then re-propose.
            with contextlib.suppress(ServiceUnavailableError):
                await self._until(done, f"group {g.group_id} to apply {change}", 2.0)
        log.info("group=%d applied %s", g.group_id, change)

    def _require_controller_leader(self) -> None:
        g = self.groups[CONTROLLER_GROUP]
        if not g.raw.is_leader:
            raise NotLeaderHereError(self._leader_url(g))

    async def add_member(self, node_id: int, raft: str, http: str) -> dict[str, Any]:
        """Make `node_id` a voter of every group (it must be running, with an empty data dir)."""
        self._require_controller_leader()
        parse_address(raft, "raft address")
        parse_address(http, "http address")
        record = json.dumps({"raft": raft, "http": http}).encode()
        ctl = self.groups[CONTROLLER_GROUP]
        await self._write(
            ctl, Command(kind=CommandKind.PUT, key=_member_key(node_id), value=record)
        )
        change = ConfChangeSingle(type=ConfChangeType.ADD_NODE, node_id=node_id)
        await asyncio.gather(*(self._change(g, change) for g in self.groups.values()))
        return {"added": node_id, "groups": sorted(self.groups)}

    async def remove_member(self, node_id: int) -> dict[str, Any]:
        """Remove `node_id` from every group (moving leadership away first) and forget it."""
        self._require_controller_leader()
        voters = self.groups[CONTROLLER_GROUP].conf_state.voters
        if node_id not in voters:
            raise LookupError(f"node {node_id} is not a member")
        if node_id == self.config.node_id:
            raise LookupError("ask another node to remove this one (it leads the controller)")
        others = [i for i in sorted(voters) if i != node_id]
        for g in self.groups.values():
            if g.raw.lead == node_id:
                to = others[0]
                await self._act(g, functools.partial(RawNode.transfer_leader, transferee=to))
                moved = functools.partial(_lead_is_not, g, (0, node_id))
                await self._until(moved, "leadership to move", 10.0)
        change = ConfChangeSingle(type=ConfChangeType.REMOVE_NODE, node_id=node_id)
        for g in self.groups.values():
            await self._change(g, change)
        ctl = self.groups[CONTROLLER_GROUP]
        await self._write(ctl, Command(kind=CommandKind.DELETE, key=_member_key(node_id)))
        return {"removed": node_id}

    async def transfer_leader(self, to: int, group: int | None) -> dict[str, Any]:
        """Ask the leaders of `group` (or of every group) to hand leadership to `to`."""
        if to not in self.members:
            raise LookupError(f"node {to} is not a member")
        if group is not None and group not in self.groups:
            raise LookupError(f"no group {group}")
        targets = [self.groups[group]] if group is not None else list(self.groups.values())
        deadline = time.monotonic() + _ADMIN_TIMEOUT_S
        for g in targets:
            # A transfer is abandoned after an election timeout if the target is not caught
            # up by then (Raft thesis §3.10): ask again until it happens or time runs out.
            while g.raw.lead != to:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(f"group {g.group_id}: leadership did not move")
                with contextlib.suppress(ServiceUnavailableError):
                    await self._act(g, functools.partial(RawNode.transfer_leader, transferee=to))
                arrived = functools.partial(_lead_is, g, to)
                with contextlib.suppress(ServiceUnavailableError):
                    await self._until(arrived, f"group {g.group_id} leader {to}", 0.5)
        return {"leader": to, "groups": [g.group_id for g in targets]}

    # -- KVService -------------------------------------------------------------------------------

    def shard_of(self, key: bytes) -> Group:
        return self.groups[crc32c.crc32c(key) % self.config.shards + 1]

    def _leader_url(self, g: Group) -> str | None:
        lead = g.raw.lead
        m = self.members.get(lead)
        return m.http_url if m is not None else None

    def next_request_id(self) -> tuple[int, int]:
        """A (client, seq) key no other request of this node uses (Kafka produce requests:
        the partition state machine keeps no KV sessions)."""
        self._seq += 1
        return self._session, self._seq

    async def _write(self, g: Group, cmd: Command, *, leader_only: bool = True) -> Result:
        """Propose `cmd` on `g` and wait for its result. With `leader_only` off, a follower
        proposes too (the core forwards it to the leader) and answers once it applies it.
        A command without a client session gets one of the node's own for its lifetime."""
        if leader_only and not g.raw.is_leader:
            raise NotLeaderHereError(self._leader_url(g))
        if cmd.client != 0:
            return await self._propose_and_wait(g, cmd)
        with self.sessions.lease() as (client, seq):
            cmd = Command(
                kind=cmd.kind,
                key=cmd.key,
                value=cmd.value,
                expected_revision=cmd.expected_revision,
                client=client,
                seq=seq,
            )
            return await self._propose_and_wait(g, cmd)

    async def _propose_and_wait(self, g: Group, cmd: Command) -> Result:
        loop = asyncio.get_running_loop()
        fut = g.submit((cmd.client, cmd.seq), encode_command(cmd))
        self._kick.set()
        timer = loop.call_later(
            self.config.request_timeout_s,
            _time_out,
            g,
            fut,
            "timed out waiting for the write to commit",
        )
        try:
            return cast("Result", await wait(fut))
        except ProposalDroppedError:
            raise NotLeaderHereError(self._leader_url(g)) from None
        finally:
            timer.cancel()

    async def _read_barrier(self, g: Group, *, timeout_s: float | None = None) -> None:
        """Wait until a linearizable read of `g` may be served here (ReadIndex); at most
        `timeout_s` (default: the configured request timeout)."""
        self._read_seq += 1
        ctx = f"{self._session}:{self._read_seq}".encode()
        loop = asyncio.get_running_loop()
        fut = g.submit_read(ctx)
        self._kick.set()
        timer = loop.call_later(
            self.config.request_timeout_s if timeout_s is None else timeout_s,
            _time_out,
            g,
            fut,
            "timed out confirming the read with a quorum",
        )
        try:
            await wait(fut)
        except ProposalDroppedError:
            raise ServiceUnavailableError("no leader to confirm the read") from None
        finally:
            timer.cancel()

    async def put(
        self, key: bytes, value: bytes, *, expected_revision: int, client: int, seq: int
    ) -> Result:
        kind = CommandKind.CAS if expected_revision >= 0 else CommandKind.PUT
        cmd = Command(
            kind=kind,
            key=key,
            value=value,
            expected_revision=expected_revision,
            client=client,
            seq=seq,
        )
        return await self._timed("put", self._write(self.shard_of(key), cmd))

    async def delete(self, key: bytes, *, client: int, seq: int) -> Result:
        cmd = Command(kind=CommandKind.DELETE, key=key, client=client, seq=seq)
        return await self._timed("delete", self._write(self.shard_of(key), cmd))

    async def get(self, key: bytes, consistency: Consistency) -> ValueRecord | None:
        async def op() -> ValueRecord | None:
            g = self.shard_of(key)
            if consistency != Consistency.STALE:
                await self._read_barrier(g)
            got = _kv(g).get(key)
            return None if got is None else ValueRecord(key=key, value=got[0], revision=got[1])

        return await self._timed("get", op())

    async def scan(
        self, start: bytes, end: bytes | None, limit: int, consistency: Consistency
    ) -> list[ValueRecord]:
        async def op() -> list[ValueRecord]:
            shards = [g for gid, g in sorted(self.groups.items()) if gid != CONTROLLER_GROUP]
            if consistency != Consistency.STALE:
                await asyncio.gather(*(self._read_barrier(g) for g in shards))
            rows = [r for g in shards for r in _kv(g).scan(start, end, limit)]
            rows.sort()
            return [ValueRecord(key=k, value=v, revision=r) for k, v, r in rows[:limit]]

        return await self._timed("scan", op())

    async def _timed(self, name: str, coro: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        status = 200
        try:
            return await coro
        except NotLeaderHereError:
            status = 421
            raise
        except ServiceUnavailableError:
            status = 503
            raise
        finally:
            self.request_s.setdefault(name, Histogram()).observe(time.perf_counter() - started)
            key = (name, status)
            self.requests_total[key] = self.requests_total.get(key, 0) + 1

    # -- status and metrics ----------------------------------------------------------------------

    def cluster_status(self) -> dict[str, Any]:
        c = self.config
        groups = []
        for gid, g in sorted(self.groups.items()):
            st = g.raw.status()
            last = st.last_index
            lag = {}
            if g.raw.is_leader:
                for node_id, pr in sorted(g.raw.raft.trk.progress.items()):
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
        ts = self.transport.stats
        for peer, depth in self.transport.queue_depths().items():
            gauges.append(
                (
                    "quorumdb_transport_queue_depth",
                    "Messages queued per peer",
                    f'peer="{peer}"',
                    depth,
                )
            )
        gauges += [
            ("quorumdb_transport_sent_messages_total", "Messages sent", "", ts.sent_messages),
            (
                "quorumdb_transport_dropped_total",
                "Messages dropped (full queue)",
                'reason="full"',
                ts.dropped_full,
            ),
            (
                "quorumdb_transport_dropped_total",
                "Messages dropped",
                'reason="failed"',
                ts.dropped_failed,
            ),
            (
                "quorumdb_transport_rejected_connections_total",
                "Bad peer connections",
                "",
                ts.rejected_connections,
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


def _member_key(node_id: int) -> bytes:
    return _MEMBER_PREFIX + str(node_id).encode()


def _time_out(g: Group, fut: Pending[Any], message: str) -> None:
    """A request's deadline passed: stop waiting (its entry may still apply later)."""
    if not fut.done():
        g.forget(fut)
        fut.set_exception(ServiceUnavailableError(message))


def _lead_is(g: Group, node_id: int) -> bool:
    return g.raw.lead == node_id


def _lead_is_not(g: Group, node_ids: tuple[int, ...]) -> bool:
    return g.raw.lead not in node_ids


def _early_apply(g: Group, rd: Ready) -> bool:
    """May `rd` be applied before its Persist step completes? Yes for a KV group whose
    committed entries are all below the entries this Ready persists (so durable here since
    an earlier round, and committed: on a quorum) and hold no configuration change; never
    with a snapshot. Clients are answered meanwhile, which is what a commit promises."""
    committed = rd.committed_entries
    if not committed or rd.snapshot is not None or not isinstance(g.sm, KVStateMachine):
        return False
    if rd.entries and committed[-1].index >= rd.entries[0].index:
        return False
    conf = EntryType.CONF_CHANGE
    return all(e.type != conf for e in committed)


def _kv(g: Group) -> KVStateMachine:
    sm = g.sm
    assert isinstance(sm, KVStateMachine), f"group {g.group_id} is not a KV group"
    return sm
