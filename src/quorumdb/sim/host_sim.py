"""A deterministic simulation of a cluster of real `NodeHost`s, checked like a Jepsen run.

Theory of operation. Every node is a `sim.host_node.HostNode`: the host users run, over
simulated time, network and disk. Clients issue reads and writes of a few keys through the
host's own request API (`submit_write`, `submit_read`: the same calls the HTTP service
makes), each to a node chosen at random, and record a history in the Jepsen format; a write
that gets no answer is retried on another node with the same (client, seq), as the real
client does, so the session table must apply it at most once. A nemesis crashes and
restarts nodes (tearing unsynced writes) and partitions the network, on a schedule drawn
from the seed; the network duplicates messages (and loses some, with `loss`). After
`duration_us` everything heals, and the run checks:

- linearizability of the KV history (per key, real revisions and sessions underneath);
- Raft's safety properties, per group, from every entry every node applied and every
  election it won (`check.raft_invariants`);
- liveness after the heal: every group elects a leader and a write to each key completes;
- no node failed (an exception out of the host is a bug: the node would stop);
- with `kafka`, Kafka delivery over a topic's produce/fetch history (`sim.kafka_workload`:
  every node runs the real Kafka backend; its partitions are Raft groups checked as above).

A run is a pure function of its options: `HostSimResult.digest` fingerprints its events.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import Verdict, check_linearizable
from quorumdb.check.raft_invariants import RaftSafetyChecker
from quorumdb.host.config import NodeConfig
from quorumdb.host.group import Group
from quorumdb.host.node_host import NodeHost, kv_state
from quorumdb.host.pending import Pending
from quorumdb.kv.commands import Command, CommandKind
from quorumdb.raft import Entry, PlantedBug, ProposalDroppedError, Ready
from quorumdb.sim.clock import NodeClock
from quorumdb.sim.host_node import DiskLatency, HostNode, sim_member
from quorumdb.sim.kafka_workload import KafkaWorkload
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet
from quorumdb.sim.trace_log import logs_in_trace

__all__ = ["HostSimOptions", "HostSimResult", "run_host_sim"]

_CLIENT_TIMEOUT_US = 1_000_000
_HEAL_US = 5_000_000
_FAIL_BACKOFF_US = 5_000
_WRITE_ATTEMPTS = 3
_ATTEMPT_US = 300_000  # an attempt unanswered for this long is retried elsewhere
_RETRY_US = 5_000


@dataclass(frozen=True, slots=True)
class HostSimOptions:
    seed: int
    nodes: int = 3
    shards: int = 2
    clients: int = 4
    keys: int = 3
    duration_us: int = 4_000_000
    crash: bool = True
    partition: bool = True
    loss: float = 0.0
    duplicate: float = 0.02  # messages the network delivers twice
    latency_us: tuple[int, int] = (100, 400)  # network: minimum, mean of the exponential rest
    snapshot_entries: int = 40
    disk: DiskLatency = field(default_factory=DiskLatency)
    drift: float = 0.01  # max clock rate deviation
    planted_bugs: frozenset[PlantedBug] = frozenset()
    # Clients wait this long (uniform, µs) between operations, and start within `start_us`.
    think_us: tuple[int, int] = (1_000, 20_000)
    start_us: tuple[int, int] = (50_000, 100_000)
    # A Kafka topic with producers and consumers on every node's backend (`sim.kafka_workload`).
    kafka: bool = False


@dataclass(frozen=True, slots=True)
class HostSimResult:
    seed: int
    violations: list[str]
    digest: str
    operations: int
    ok_operations: int
    midflight_applied: int
    crashes: int
    events: int
    kafka_acked: int = 0  # records the Kafka workload's producers got acknowledged

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
    def __init__(self, sim: HostSimulation, client_id: int) -> None:
        self.sim = sim
        self.id = client_id
        self.seq = 0
        self.process = sim.new_process()
        self.busy = False


class HostSimulation:
    def __init__(self, opts: HostSimOptions) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.loop = EventLoop()
        self.net = SimNet(
            self.loop,
            random.Random(self.rng.getrandbits(64)),
            latency_min_us=opts.latency_us[0],
            latency_mean_us=opts.latency_us[1],
            loss=0.0,
            duplicate=opts.duplicate,
            fifo=False,
        )
        self.violations: list[str] = []
        self.history: list[dict[str, Any]] = []
        self._processes = 0
        self.checkers: dict[int, RaftSafetyChecker] = {}
        self._reported: dict[int, int] = {}
        self.crashes = 0
        self.nodes: dict[int, HostNode] = {}
        members = {i: sim_member(i) for i in range(1, opts.nodes + 1)}
        for i in members:
            cfg = NodeConfig(
                node_id=i,
                data_dir=Path(f"n{i}"),
                members=members,
                shards=opts.shards,
                tick_ms=10,
                election_ticks=15,
                heartbeat_ticks=3,
                snapshot_entries=opts.snapshot_entries,
            )
            rate = 1.0 + self.rng.uniform(-opts.drift, opts.drift)
            self.nodes[i] = HostNode(
                i,
                cfg,
                loop=self.loop,
                net=self.net,
                nodes=self.nodes,
                clock=NodeClock(rate=rate, offset_us=self.rng.randrange(-50_000, 50_000)),
                rng=random.Random(self.rng.getrandbits(64)),
                disk_latency=opts.disk,
                on_started=self._observe,
                on_failed=self._node_failed,
                planted_bugs=opts.planted_bugs,
            )
        self.clients = [_Client(self, 1_000 + c) for c in range(opts.clients)]
        self.kafka = (
            KafkaWorkload(
                loop=self.loop,
                nodes=self.nodes,
                rng=random.Random(self.rng.getrandbits(64)),
                new_process=self.new_process,
                violate=self._violate,
                running=lambda: self.running,
            )
            if opts.kafka
            else None
        )
        self.running = True

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

    def _watch(self, node_id: int, g: Group) -> None:
        checker = self.checkers.setdefault(g.group_id, RaftSafetyChecker())

        def applied(e: Entry) -> None:
            checker.on_apply(node_id, e.index, e.term, e.data)
            self._collect(g.group_id, checker)

        g.on_applied = applied

    def _after_apply(self, node_id: int, g: Group, rd: Ready, lead_before: int) -> None:
        if rd.soft_state is None or not g.raw.is_leader or lead_before == node_id:
            return
        log = g.raw.raft.raft_log
        checker = self.checkers[g.group_id]
        checker.on_leader(node_id, g.raw.raft.term, log.first_index(), log.last_index(), log.term)
        self._collect(g.group_id, checker)

    def _collect(self, gid: int, checker: RaftSafetyChecker) -> None:
        reported = self._reported.get(gid, 0)
        for v in checker.violations[reported:]:
            self._violate(f"group {gid}: {v}")
        self._reported[gid] = len(checker.violations)

    def _violate(self, message: str) -> None:
        self.loop.trace(f"VIOLATION {message}")
        self.violations.append(message)

    def _node_failed(self, node: HostNode, exc: BaseException) -> None:
        self._violate(f"node {node.id} failed: {type(exc).__name__}: {exc}")

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
            self._write(c, node.id, host, key)
        else:
            self._read(c, node.id, host, key)

    def _write(self, c: _Client, node_id: int, host: NodeHost, key: str) -> None:
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
        p = host.submit_write(host.shard_of(cmd.key), cmd)
        value = int(cmd.value)

        def retry() -> None:
            up = [n.host for n in self.nodes.values() if n.host is not None]
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

    def _read(self, c: _Client, node_id: int, host: NodeHost, key: str) -> None:
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

    # -- the nemesis ---------------------------------------------------------------------------

    def _nemesis(self) -> None:
        if not self.running:
            return
        opts = self.opts
        choices = []
        if opts.crash:
            choices.append(self._crash_one)
        if opts.partition:
            choices.append(self._partition_minority)
        if choices:
            self.rng.choice(choices)()
        self.loop.after(self.rng.randrange(150_000, 600_000), self._nemesis)

    def _crash_one(self) -> None:
        up = [n for n in self.nodes.values() if n.host is not None]
        if len(up) < len(self.nodes):
            return  # one node down at a time
        node = self.rng.choice(up)
        node.crash(tear=self.rng.random() < 0.5)
        self.crashes += 1
        self.loop.after(self.rng.randrange(50_000, 500_000), self._restart, node)

    def _restart(self, node: HostNode) -> None:
        if node.host is None and node.refused is None:
            node.start()

    def _partition_minority(self) -> None:
        ids = sorted(self.nodes)
        self.rng.shuffle(ids)
        minority = ids[: (len(ids) - 1) // 2]
        self.net.partition([minority, ids[len(minority) :]])
        self.loop.trace(f"partition {sorted(minority)}")
        self.loop.after(self.rng.randrange(100_000, 500_000), self._heal_net)

    def _heal_net(self) -> None:
        self.net.heal()
        self.loop.trace("heal")

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> HostSimResult:
        self.net.loss = self.opts.loss
        for node in self.nodes.values():
            node.start()
        for c in self.clients:
            self._schedule_client(c, _draw(self.rng, self.opts.start_us))
        if self.kafka is not None:
            self.kafka.start()
        self.loop.after(300_000, self._nemesis)
        self.loop.run_until(self.opts.duration_us)
        self.running = False
        self._heal_all()
        self._check_liveness()
        if self.kafka is not None:
            self.kafka.finish()
        self._check_history()
        midflight = sum(
            g.stats.midflight_applied
            for n in self.nodes.values()
            if n.host is not None
            for g in n.host.groups.values()
        )
        return HostSimResult(
            seed=self.opts.seed,
            violations=self.violations,
            digest=self.loop.digest(),
            operations=sum(1 for e in self.history if e["type"] == "invoke"),
            ok_operations=sum(1 for e in self.history if e["type"] == "ok"),
            midflight_applied=midflight,
            crashes=self.crashes,
            events=self.loop.events,
            kafka_acked=self.kafka.acked if self.kafka is not None else 0,
        )

    def _heal_all(self) -> None:
        self.net.heal()
        self.net.loss = 0.0
        for node in self.nodes.values():
            if node.host is None and node.refused is None:
                node.start()
        # Let operations still in flight finish (their clients time out otherwise).
        self.loop.run_until(self.loop.now + _CLIENT_TIMEOUT_US + 10_000)

    def _check_liveness(self) -> None:
        """After the heal, every group gets a leader and a write to each key completes."""
        deadline = self.loop.now + _HEAL_US
        client = _Client(self, 999)

        def leaders() -> bool:
            up = [n.host for n in self.nodes.values() if n.host is not None]
            gids = up[0].groups if up else {}
            return bool(up) and all(
                any((hg := h.groups.get(g)) is not None and hg.raw.is_leader for h in up)
                for g in gids
            )

        self.loop.run_until(deadline, stop=leaders)
        if not leaders():
            self._violate("liveness: some group has no leader after the heal")
            return
        for key in (f"k{k}" for k in range(self.opts.keys)):
            up = [n.host for n in self.nodes.values() if n.host is not None]
            # The shard's leader if one is known (a follower would forward it anyway).
            leading = [h for h in up if h.shard_of(key.encode()).raw.is_leader]
            host = (leading or up)[0]
            client.seq += 1
            cmd = Command(
                kind=CommandKind.PUT,
                key=key.encode(),
                value=b"final",
                client=client.id,
                seq=client.seq,
            )
            p = host.submit_write(host.shard_of(cmd.key), cmd)
            self.loop.run_until(deadline, stop=p.done)
            if not p.done() or p.exception() is not None:
                self._violate(f"liveness: the final write of {key} did not complete")

    def _check_history(self) -> None:
        history = history_from_events(self.history)
        result = check_linearizable(history)
        if result.verdict == Verdict.NOT_LINEARIZABLE:
            self._violate(f"linearizability: the KV history is not linearizable:\n{result}")


def _draw(rng: random.Random, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return lo if hi <= lo else rng.randrange(lo, hi)


def _register_value(raw: bytes) -> int | str:
    """A stored value as the history's register value (clients write decimal numbers)."""
    text = raw.decode()
    return int(text) if text.isdigit() else text


def run_host_sim(opts: HostSimOptions) -> HostSimResult:
    sim = HostSimulation(opts)
    with logs_in_trace(sim.loop, "quorumdb.storage", "quorumdb.host", "quorumdb.kafka"):
        return sim.run()
