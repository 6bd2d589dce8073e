"""One deterministic simulation run of real nodes, checked like a Jepsen run.

Theory of operation. Every node is a `sim.host_node.HostNode`: the `NodeHost` users run
(controller, KV shards with the real state machine and sessions, the shared WAL with group
commit and the work done while a write runs, snapshots, membership) over simulated time,
network and disk. Clients issue reads and writes of a few keys through the host's own request
API (`submit_write`, `submit_read`: the calls the HTTP service makes), each to a node chosen at
random, and record a history in the Jepsen format; a write that gets no answer is retried on
another node with the same (client, seq), as the real client does, so the session table must
apply it at most once.

A run has two phases. In the *fault phase* the nemesis (`sim.nemesis`) injects the seed's fault
mix (`sim.options.swarm_options`): partitions of every shape, clogged links, crashes (tearing
unsynced writes), buggify crashes during an fsync and right after a leader applies, pauses,
corrupted disks, leadership transfers, a node added to every group and removed again, on top
of the run's loss, duplication, reordering, clock drift and disk latency. Then everything heals
and the *liveness phase* must see, within a budget, every group with a leader, a write to each
key complete, and a membership change under way finish. Checked throughout and at the end:

- Raft's safety properties per group, from every entry every node applied and every election
  it won, and log matching across the final logs (`check.raft_invariants`);
- linearizability of the KV history (per key; real revisions and sessions underneath);
- recovery: a node refuses to start if and only if the nemesis corrupted its disk;
- no node failed (an exception out of the host is a bug: the real node would stop).

Everything random comes from one seed, so `run(opts)` is a pure function of `opts`; the trace
digest proves it (the determinism test runs seeds twice).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import Verdict, check_linearizable
from quorumdb.check.raft_invariants import LogEntry, RaftSafetyChecker
from quorumdb.host.config import NodeConfig
from quorumdb.host.group import Group
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.host.pending import Pending
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.kv.node_kv import kv_state, node_kv
from quorumdb.raft import Entry, ProposalDroppedError, Ready
from quorumdb.sim.bank_workload import BankWorkload
from quorumdb.sim.clock import NodeClock
from quorumdb.sim.host_node import HostNode, midflight_applied, sim_member
from quorumdb.sim.kafka_workload import KafkaWorkload
from quorumdb.sim.list_append_workload import ListAppendWorkload
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.membership import Membership
from quorumdb.sim.nemesis import Nemesis
from quorumdb.sim.network import SimNet
from quorumdb.sim.options import DiskLatency, SimOptions
from quorumdb.sim.trace_log import logs_in_trace

__all__ = ["SimResult", "Simulation", "run"]

_CLIENT_TIMEOUT_US = 1_000_000
_FAIL_BACKOFF_US = 5_000
_WRITE_ATTEMPTS = 3
_ATTEMPT_US = 300_000  # an attempt unanswered for this long is retried elsewhere
_RETRY_US = 5_000
_CONVERGE_US = 3_000_000
_EVENTS_MAX = 400_000  # healthy runs take under 60,000 events; far more is a message storm


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """The outcome of one run; `violations` is empty when every check passed."""

    seed: int
    options: SimOptions
    violations: list[str]
    caught_by: list[str]
    trace_digest: str
    history: list[dict[str, Any]]
    trace_lines: list[str] | None
    stats: dict[str, int] = field(default_factory=dict)
    elle_history: list[dict[str, Any]] = field(default_factory=list)  # list-append txns

    @property
    def ok(self) -> bool:
        return not self.violations


class _Op:
    """An operation in flight: completed once, by whichever answer or timeout comes first."""

    __slots__ = ("_finish", "finished", "maybe_applied")

    def __init__(self, finish: Callable[[str, object], None]) -> None:
        self._finish = finish
        self.finished = False
        self.maybe_applied = False  # an earlier attempt may have been proposed

    def done(self, kind: str, result: object) -> None:
        if not self.finished:
            self.finished = True
            self._finish(kind, result)


class _Client:
    def __init__(self, sim: Simulation, client_id: int) -> None:
        self.sim = sim
        self.id = client_id
        self.seq = 0
        self.process = sim.new_process()
        self.busy = False


class Simulation:
    def __init__(self, opts: SimOptions, *, keep_trace: bool = False) -> None:
        self.opts = opts
        self.rng = random.Random(f"{opts.seed}-sim")
        self.loop = EventLoop(keep_lines=keep_trace, events_max=_EVENTS_MAX)
        self.net = SimNet(
            self.loop,
            random.Random(f"{opts.seed}-net"),
            latency_min_us=opts.latency_min_us,
            latency_mean_us=opts.latency_mean_us,
            loss=0.0,
            duplicate=opts.duplicate,
            fifo=opts.fifo_links,
        )
        self.violations: list[str] = []
        self.caught_by: list[str] = []
        self.history: list[dict[str, Any]] = []
        self._processes = 0
        self.checkers: dict[int, RaftSafetyChecker] = {}
        # node -> group -> the last index it applied in its current incarnation
        self._applied_max: dict[int, dict[int, int]] = {}
        self._reported: dict[int, int] = {}
        self.leaders_elected = 0
        self.nodes: dict[int, HostNode] = {}
        self.running = True  # clients and faults run (until the heal)
        self._founders = {i: sim_member(i) for i in range(1, opts.nodes + 1)}
        for i in self._founders:
            self.new_node(i)
        self.membership = Membership(self, first_id=opts.nodes + 1)
        self.nemesis = Nemesis(self, opts, random.Random(f"{opts.seed}-nemesis"))
        self.clients = [_Client(self, 1_000 + c) for c in range(opts.clients)]
        self.heal_time: int | None = None
        self.kafka = (
            KafkaWorkload(
                loop=self.loop,
                nodes=self.nodes,
                rng=random.Random(f"{opts.seed}-kafka"),
                new_process=self.new_process,
                violate=lambda message: self._violate("kafka-delivery", message),
                running=lambda: self.running,
            )
            if opts.kafka
            else None
        )
        self.bank = (
            BankWorkload(
                loop=self.loop,
                nodes=self.nodes,
                rng=random.Random(f"{opts.seed}-bank"),
                violate=self._violate,
                running=lambda: self.running,
            )
            if opts.bank
            else None
        )
        self.list_append = (
            ListAppendWorkload(
                loop=self.loop,
                nodes=self.nodes,
                rng=random.Random(f"{opts.seed}-list-append"),
                violate=self._violate,
                running=lambda: self.running,
            )
            if opts.list_append
            else None
        )

    # -- the cluster ---------------------------------------------------------------------------

    def new_node(self, node_id: int) -> HostNode:
        """A node with an empty disk; its config names the members now and itself."""
        opts = self.opts
        # Founders are all members from the start (some are not built yet); added nodes
        # until they retire.
        members = {i: sim_member(i) for i, n in self.nodes.items() if not n.retired}
        members = {**self._founders, **members, node_id: sim_member(node_id)}
        cfg = NodeConfig(
            node_id=node_id,
            data_dir=Path(f"n{node_id}"),
            members=members,
            shards=opts.shards,
            tick_ms=opts.tick_ms,
            election_ticks=opts.election_ticks,
            heartbeat_ticks=opts.heartbeat_ticks,
            snapshot_entries=opts.snapshot_entries,
            lease_reads=opts.lease_reads,
            pre_vote=opts.pre_vote,
        )
        rng = random.Random(f"{opts.seed}-node-{node_id}")
        drift = opts.drift_max
        offset = opts.clock_offset_max_us
        node = HostNode(
            node_id,
            cfg,
            loop=self.loop,
            net=self.net,
            nodes=self.nodes,
            clock=NodeClock(
                rate=1.0 + rng.uniform(-drift, drift),
                offset_us=rng.randint(-offset, offset),
            ),
            rng=rng,
            disk_latency=opts.disk if self.running else DiskLatency(),
            on_started=self._observe,
            on_failed=self._node_failed,
            planted_bugs=opts.planted_bugs,
            crash_in_sync=self._maybe_crash_in_sync(node_id),
            segment_bytes=opts.wal_segment_bytes,
        )
        p = opts.crash_after_commit
        if p > 0:
            # A buggify site: a node dies right after it answered clients from entries it
            # applied while its own write of them may not be durable yet.
            def after_midflight() -> None:
                if self.rng.random() < 5 * p:
                    self.loop.after(0, self.nemesis.crash_now, node_id)

            node.after_midflight = after_midflight
        self.nodes[node_id] = node
        return node

    def _maybe_crash_in_sync(self, node_id: int) -> Callable[[int, bool], None] | None:
        p = self.opts.crash_in_sync
        if p <= 0:
            return None
        rng = random.Random(f"{self.opts.seed}-buggify-{node_id}")

        def maybe(delay_us: int, votes: bool) -> None:
            # Writes that persist a vote are few and matter most (power loss mid-election).
            if rng.random() < (min(1.0, 10 * p) if votes else p):
                self.loop.after(delay_us, self.nemesis.crash_now, node_id)

        return maybe

    def restart(self, node_id: int) -> None:
        node = self.nodes[node_id]
        applied = self._applied_max.pop(node_id, {})
        node.start()
        if node.host is not None:
            self._check_applied_was_durable(node_id, node.host, applied)
        corrupted = node_id in self.nemesis.corrupted
        if node.up and corrupted:
            self._violate(
                "corruption-detection", f"n{node_id} started from a disk with a corrupted record"
            )
        elif not node.up and not corrupted:
            self._violate(
                "recovery", f"n{node_id} refuses to start from an intact disk: {node.refused}"
            )

    def _check_applied_was_durable(
        self, node_id: int, host: NodeHost, applied: dict[int, int]
    ) -> None:
        """What a node applied before a crash, its disk must give back: a node applies (and
        answers clients from) only entries durable in its own log, so recovery must reach
        at least the last index it applied. (Raft needs a node's own acknowledgement of an
        entry to mean it is on disk; the mid-flight path must not apply ahead of it.)"""
        for gid, index in sorted(applied.items()):
            glog = host.logs.get(gid)
            if glog is None:
                continue
            recovered = glog.storage.last_index()
            if recovered < index:
                self._violate(
                    "applied-durable",
                    f"group {gid}: n{node_id} applied index {index} before its crash, but its "
                    f"disk gave back the log only to {recovered}",
                )

    def group_ids(self) -> list[int]:
        """The groups every node hosts: the controller and the KV shards."""
        return list(range(CONTROLLER_GROUP, self.opts.shards + 1))

    def leader_of(self, gid: int) -> HostNode | None:
        """The up node leading `gid` in the highest term, if any."""
        best: HostNode | None = None
        best_term = -1
        for n in self.nodes.values():
            host = n.host
            if host is None or gid not in host.groups:
                continue
            raw = host.groups[gid].raw
            if raw.is_leader and raw.term > best_term:
                best, best_term = n, raw.term
        return best

    def _up_hosts(self) -> list[NodeHost]:
        return [n.host for n in self.nodes.values() if n.host is not None]

    # -- observation -------------------------------------------------------------------------

    def new_process(self) -> int:
        self._processes += 1
        return self._processes

    def _observe(self, node: HostNode) -> None:
        host = node.host
        assert host is not None
        if self.kafka is not None:
            self.kafka.attach(node, self._watch)  # watches the partition groups too
        else:
            for g in host.groups.values():
                self._watch(node.id, g)
        host.after_apply.append(
            lambda g, rd, lead_before: self._after_apply(node.id, g, rd, lead_before)
        )
        if self.bank is not None:
            self.bank.attach(node)
        if self.list_append is not None:
            self.list_append.attach(node)

    def _watch(self, node_id: int, g: Group) -> None:
        checker = self.checkers.setdefault(g.group_id, RaftSafetyChecker())

        marks = self._applied_max.setdefault(node_id, {})

        def applied(e: Entry) -> None:
            checker.on_apply(node_id, e.index, e.term, e.data)
            marks[g.group_id] = e.index
            self._collect(g.group_id, checker)

        g.on_applied = applied

    def _after_apply(self, node_id: int, g: Group, rd: Ready, lead_before: int) -> None:
        raw = g.raw
        if not raw.is_leader:
            return
        p = self.opts.crash_after_commit
        if p > 0 and rd.committed_entries and self.rng.random() < p:
            # A buggify site: the leader dies right after applying (and answering clients),
            # before its followers hear the new commit index.
            self.loop.after(0, self.nemesis.crash_now, node_id)
        if rd.soft_state is None or lead_before == node_id:
            return
        checker = self.checkers[g.group_id]
        self.leaders_elected += 1
        self.loop.trace(f"n{node_id} leads g{g.group_id} term {raw.term}")
        checker.on_leader(node_id, raw.term, raw.first_index(), raw.last_index(), raw.term_of)
        self._collect(g.group_id, checker)
        self.nemesis.on_new_leader(node_id)

    def _collect(self, gid: int, checker: RaftSafetyChecker) -> None:
        reported = self._reported.get(gid, 0)
        for v in checker.violations[reported:]:
            self._violate(v.kind.value, f"group {gid}: {v}")
        self._reported[gid] = len(checker.violations)

    def _violate(self, checker: str, message: str) -> None:
        self.loop.trace(f"VIOLATION {message}")
        self.violations.append(f"t={self.loop.now}us {message}")
        if checker not in self.caught_by:
            self.caught_by.append(checker)

    def _node_failed(self, node: HostNode, exc: BaseException) -> None:
        self._violate("node-failure", f"node {node.id} failed: {type(exc).__name__}: {exc}")

    def _record(self, process: int, kind: str, f: str, key: str, value: object) -> None:
        self.history.append(
            {
                "process": process,
                "type": kind,
                "f": f,
                "key": key,
                "value": value,
                "time": self.loop.now,
            }
        )
        self.loop.trace(f"h p{process} {kind} {f} {key} {value}")

    # -- clients -------------------------------------------------------------------------------

    def _schedule_client(self, c: _Client, delay_us: int) -> None:
        self.loop.after(delay_us, self._client_op, c)

    def _client_op(self, c: _Client) -> None:
        if not self.running or c.busy:
            return
        up = [n for n in self.nodes.values() if n.host is not None]
        if not up:
            self._schedule_client(c, 20_000)
            return
        key = f"k{self.rng.randrange(self.opts.keys)}"
        node = self.rng.choice(up)
        host = node.host
        assert host is not None
        if self.rng.random() < 0.5:
            self._write(c, host, key)
        else:
            self._read(c, host, key)

    def _write(self, c: _Client, host: NodeHost, key: str) -> None:
        c.seq += 1
        value = c.id * 1_000_000 + c.seq
        cmd = Command(
            kind=CommandKind.PUT,
            key=key.encode(),
            value=str(value).encode(),
            client=c.id,
            seq=c.seq,
        )
        process = c.process
        self._record(process, "invoke", "write", key, value)
        c.busy = True
        op = self._completion(c, process, "write", key, value)
        self._attempt_write(host, cmd, op, _WRITE_ATTEMPTS)

    def _attempt_write(self, host: NodeHost, cmd: Command, op: _Op, attempts: int) -> None:
        """One attempt of a write; a retry goes to another node with the SAME (client, seq),
        as the real client does, so the session table must apply it at most once."""
        if op.finished:
            return
        p = node_kv(host).submit_write(host.shard_of(cmd.key), cmd)
        value = int(cmd.value)

        def retry() -> None:
            up = self._up_hosts()
            if attempts > 1 and up and not op.finished:
                self._attempt_write(self.rng.choice(up), cmd, op, attempts - 1)

        def answered(p: Pending[Any]) -> None:
            err = p.exception()
            if err is None:
                op.done("ok", value)
            elif attempts > 1:
                op.maybe_applied |= not isinstance(err, ProposalDroppedError)
                self.loop.after(_RETRY_US, retry)
            elif isinstance(err, ProposalDroppedError) and not op.maybe_applied:
                op.done("fail", value)
            else:
                op.done("info", value)

        def silent() -> None:  # e.g. the node crashed: it will never answer
            if not p.done() and not op.finished:
                op.maybe_applied = True
                retry()

        p.add_done_callback(answered)
        self.loop.after(_ATTEMPT_US, silent)

    def _read(self, c: _Client, host: NodeHost, key: str) -> None:
        process = c.process
        self._record(process, "invoke", "read", key, None)
        c.busy = True
        g = host.shard_of(key.encode())
        p = host.submit_read(g)
        op = self._completion(c, process, "read", key, None)

        def answered(p: Pending[Any]) -> None:
            if p.exception() is not None:
                op.done("fail", None)
                return
            got = kv_state(g).get(key.encode())
            op.done("ok", None if got is None else _register_value(got[0]))

        p.add_done_callback(answered)

    def _completion(self, c: _Client, process: int, f: str, key: str, value: object) -> _Op:
        """One completion per operation: the answer, or the client's own timeout (a
        crashed node never answers): `info` for a write, `fail` for a read."""

        def finish(kind: str, result: object) -> None:
            self._record(process, kind, f, key, result)
            c.busy = False
            if kind == "info":
                c.process = self.new_process()
            # After a refusal (no leader yet, say), back off: retrying at once would spin.
            backoff = _FAIL_BACKOFF_US if kind == "fail" else 0
            self._schedule_client(c, backoff + _draw(self.rng, self.opts.think_us))

        op = _Op(finish)
        self.loop.after(
            _CLIENT_TIMEOUT_US, lambda: op.done("info" if f == "write" else "fail", value)
        )
        return op

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> SimResult:
        self.loop.trace(f"options {self.opts.describe()}")
        with logs_in_trace(self.loop, "quorumdb.storage", "quorumdb.host", "quorumdb.kafka"):
            self._run_phases()
        return self._result()

    def _run_phases(self) -> None:
        opts = self.opts
        self.net.loss = opts.loss
        for node in self.nodes.values():
            self.restart(node.id)
        for c in self.clients:
            self._schedule_client(c, _draw(self.rng, (50_000, 100_000)))
        if self.kafka is not None:
            self.kafka.start()
        if self.bank is not None:
            self.bank.start()
        if self.list_append is not None:
            self.list_append.start()
        self.loop.after(300_000, self.nemesis.start)
        self.loop.run_until(opts.fault_phase_us, stop=lambda: bool(self.violations))
        if self.violations or self._exhausted():
            return
        self._heal()
        self._check_liveness()
        if self.kafka is not None and not self.violations:
            self.kafka.finish()
        if self.bank is not None and not self.violations:
            self.bank.finish()
        if self.list_append is not None and not self.violations:
            self.list_append.finish()
        if not self.violations:
            self._converge()
        self._exhausted()
        self._check_logs()
        self._check_history()

    def _exhausted(self) -> bool:
        """Did the run use up its event budget? Messages that multiply without end (each
        answer causing more than one new message) are a liveness bug: the run would never
        finish, so the loop stops at `_EVENTS_MAX` and the run reports it."""
        if self.loop.exhausted and "event-budget" not in self.caught_by:
            self._violate("event-budget", f"more than {_EVENTS_MAX:,} events (a message storm)")
        return self.loop.exhausted

    def _heal(self) -> None:
        self.running = False
        self.nemesis.active = False
        self.heal_time = self.loop.now
        net = self.net
        net.heal()
        net.unclog_all()
        net.loss = 0.0
        net.duplicate = 0.0
        self.loop.trace("heal")
        for node in self.nodes.values():
            # A slow disk heals too: a leader stalled in an fsync sends no heartbeats, so
            # stalls longer than an election timeout keep moving leadership for ever.
            node.disk_latency = DiskLatency()
            if node.retired or node.id in self.nemesis.corrupted:
                continue
            if not node.up:
                self.restart(node.id)
        # Let operations still in flight finish (their clients time out otherwise).
        self.loop.run_until(self.loop.now + _CLIENT_TIMEOUT_US + 10_000)

    def _check_liveness(self) -> None:
        """After the heal: a leader for every group, a membership change under way done, and
        a write to each key completes."""
        deadline = self.loop.now + self.opts.liveness_budget_us
        gids = self.group_ids()

        def settled() -> bool:
            return not self.membership.busy and all(self.leader_of(g) for g in gids)

        self.loop.run_until(deadline, stop=settled)
        if self.membership.busy:
            self._violate("liveness", "liveness: a membership change did not finish after heal")
            return
        missing = [g for g in gids if self.leader_of(g) is None]
        if missing:
            self._violate("liveness", f"liveness: groups {missing} have no leader after heal")
            return
        client = _Client(self, 999)
        for key in (f"k{k}" for k in range(self.opts.keys)):
            client.seq += 1
            cmd = Command(
                kind=CommandKind.PUT,
                key=key.encode(),
                value=b"final",
                client=client.id,
                seq=client.seq,
            )
            if not self._final_write(cmd, deadline):
                self._violate("liveness", f"liveness: the final write of {key} did not complete")
                return

    def _final_write(self, cmd: Command, deadline: int) -> bool:
        """Write through the shard's current leader, retrying (same session) as a client
        would: a leader paused through the heal may have been deposed meanwhile."""
        while self.loop.now < deadline and not self.loop.exhausted:
            up = self._up_hosts()
            if not up:
                self.loop.run_until(self.loop.now + _RETRY_US)
                continue
            lead = self.leader_of(up[0].shard_of(cmd.key).group_id)
            host = lead.host if lead is not None and lead.host is not None else up[0]
            p = node_kv(host).submit_write(host.shard_of(cmd.key), cmd)
            self.loop.run_until(min(deadline, self.loop.now + _CLIENT_TIMEOUT_US), stop=p.done)
            if p.done() and p.exception() is None:
                return True
            if not p.done():
                continue
            self.loop.run_until(self.loop.now + _RETRY_US)
        return False

    def _converge(self) -> None:
        """Let every up node apply what its group committed, so the final logs compare."""
        deadline = self.loop.now + _CONVERGE_US

        def converged() -> bool:
            for gid in self.group_ids():
                states = [h.groups[gid].raw.status() for h in self._up_hosts()]
                marks = {(st.hard_state.commit, st.applied) for st in states}
                if len(marks) > 1 or any(c != a for c, a in marks):
                    return False
            return True

        while self.loop.now < deadline and not converged() and not self.loop.exhausted:
            self.loop.run_until(self.loop.now + 10_000)

    def _check_logs(self) -> None:
        """Log matching, per group, across the logs of the nodes that host it (Kafka
        partitions included)."""
        gids = sorted({gid for h in self._up_hosts() for gid in h.logs})
        for gid in gids:
            logs: dict[int, list[LogEntry]] = {}
            for n in self.nodes.values():
                if n.host is None or gid not in n.host.logs:
                    continue
                st = n.host.logs[gid].storage
                lo, hi = st.first_index(), st.last_index()
                logs[n.id] = [(e.index, e.term, e.data) for e in st.entries(lo, hi + 1, 1 << 62)]
            checker = self.checkers.setdefault(gid, RaftSafetyChecker())
            checker.check_logs(logs)
            self._collect(gid, checker)

    def _check_history(self) -> None:
        history = history_from_events(self.history)
        result = check_linearizable(history)
        if result.verdict == Verdict.NOT_LINEARIZABLE:
            self._violate("linearizability", f"the KV history is not linearizable:\n{result}")

    def _bank_stats(self) -> dict[str, int]:
        bank = self.bank
        if bank is None:
            return {}
        return {**{f"bank_{k}": v for k, v in bank.stats.items()}, "bank_audits": len(bank.audits)}

    def _list_append_stats(self) -> dict[str, int]:
        la = self.list_append
        if la is None:
            return {}
        return {**{f"la_{k}": v for k, v in la.stats.items()}, "la_events": len(la.history)}

    def _result(self) -> SimResult:
        ops = {"ok": 0, "fail": 0, "info": 0}
        for e in self.history:
            if e["type"] in ops:
                ops[e["type"]] += 1
        midflight = sum(midflight_applied(h) for h in self._up_hosts())
        stats = {
            "events": self.loop.events,
            "sim_us": self.loop.now,
            "messages": self.net.stats["sent"],
            "dropped": self.net.stats["dropped"] + self.net.stats["blocked"],
            "leaders": self.leaders_elected,
            "committed": sum(c.committed_count for c in self.checkers.values()),
            "ops_ok": ops["ok"],
            "ops_fail": ops["fail"],
            "ops_info": ops["info"],
            "midflight_applied": midflight,
            "membership_changes": self.membership.changes,
            "kafka_acked": self.kafka.acked if self.kafka is not None else 0,
            **self._bank_stats(),
            **self._list_append_stats(),
            **{f"nemesis_{k}": v for k, v in sorted(self.nemesis.counts.items())},
        }
        return SimResult(
            seed=self.opts.seed,
            options=self.opts,
            violations=self.violations,
            caught_by=self.caught_by,
            trace_digest=self.loop.digest(),
            history=self.history,
            trace_lines=self.loop.lines,
            stats=stats,
            elle_history=self.list_append.history if self.list_append is not None else [],
        )


def _draw(rng: random.Random, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return lo if hi <= lo else rng.randrange(lo, hi)


def _register_value(raw: bytes) -> int | str:
    """A stored value as the history's register value (clients write decimal numbers)."""
    text = raw.decode()
    return int(text) if text.isdigit() else text


def run(opts: SimOptions, *, keep_trace: bool = False) -> SimResult:
    """Run one simulation."""
    return Simulation(opts, keep_trace=keep_trace).run()
