"""One deterministic simulation run: a cluster, a workload, a nemesis, and the checkers.

A run has two phases. In the *fault phase* the nemesis injects the seed's fault mix while
clients work and safety is checked continuously (election safety, leader completeness, state
machine safety, invariant assertions inside the core). Then every fault is healed: partitions
and clogs removed, paused nodes resumed, crashed nodes restarted, loss and duplication off.
In the *liveness phase* the cluster must elect a leader and commit a new client write within
a bounded simulated time. At the end, logs are compared (log matching) and the client history
is checked for linearizability. Recovery is checked at every start: a node must refuse to start
if and only if the nemesis corrupted its disk (corruption is always detected; an intact disk
always recovers).

The storage layer's log lines (a torn tail truncated, a snapshot skipped) go into the trace.

Everything random comes from one seed, so `run(opts)` is a pure function of `opts`; the trace
digest proves it (the determinism test runs seeds twice).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import check_linearizable
from quorumdb.check.raft_invariants import RaftSafetyChecker
from quorumdb.raft import Message
from quorumdb.raft.describe import message_type_name
from quorumdb.sim.client_messages import ClientReply, ClientRequest, Func
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.nemesis import Nemesis
from quorumdb.sim.network import SimNet
from quorumdb.sim.node import SimNode
from quorumdb.sim.options import US_PER_S, SimOptions
from quorumdb.sim.trace_log import logs_in_trace
from quorumdb.sim.workload import HistoryRecorder, SimClient

__all__ = ["SimResult", "Simulation", "run"]

_DRAIN_US = 3 * US_PER_S
_CONVERGE_US = 5 * US_PER_S


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

    @property
    def ok(self) -> bool:
        return not self.violations


class Simulation:
    def __init__(self, opts: SimOptions, *, keep_trace: bool = False) -> None:
        self.opts = opts
        self.loop = EventLoop(keep_lines=keep_trace)
        self.rng = random.Random(f"{opts.seed}-sim")
        self.net = SimNet(
            self.loop,
            random.Random(f"{opts.seed}-net"),
            latency_min_us=opts.latency_min_us,
            latency_mean_us=opts.latency_mean_us,
            loss=opts.loss,
            duplicate=opts.duplicate,
            fifo=opts.fifo_links,
        )
        self.node_ids = tuple(range(1, opts.nodes + 1))
        self.nodes = {i: SimNode(self, i, self.node_ids, opts, opts.seed) for i in self.node_ids}
        self.checker = RaftSafetyChecker()
        self.violations: list[str] = []
        self.caught_by: list[str] = []
        self.recorder = HistoryRecorder(self.loop)
        self.clients_running = True
        self.clients = {
            c: SimClient(self, c, opts, random.Random(f"{opts.seed}-client-{c}"), self.recorder)
            for c in range(1, opts.clients + 1)
        }
        self.nemesis = Nemesis(self, opts, random.Random(f"{opts.seed}-nemesis"))
        self.heal_time: int | None = None
        self.live = False
        self.leaders_elected = 0
        self.recorder.on_ok = self._on_ok

    # -- hooks for nodes and clients ---------------------------------------------------------

    def send_raft(self, m: Message) -> None:
        if m.to == m.from_:
            return
        self.loop.trace(
            f"send {m.from_}->{m.to} {message_type_name(m.type)} t{m.term} i{m.index} "
            f"c{m.commit} n{len(m.entries)}{' R' if m.reject else ''}"
        )
        target = self.nodes.get(m.to)
        if target is not None:
            self.net.send(m.from_, m.to, target.receive, 0, m)

    def reply(self, node: int, reply: ClientReply) -> None:
        client = self.clients[reply.client]
        self.net.send(node, -reply.client, client.on_reply, reply, partitionable=False)

    def send_request(self, node: int, req: ClientRequest) -> None:
        self.net.send(-req.client, node, self.nodes[node].receive, 1, req, partitionable=False)

    def on_leader(
        self, node: int, term: int, first: int, last: int, term_at: Callable[[int], int]
    ) -> None:
        self.leaders_elected += 1
        self.nemesis.on_new_leader(node)
        before = len(self.checker.violations)
        self.checker.on_leader(node, term, first, last, term_at)
        self._collect(before)

    def on_apply(self, node: int, index: int, term: int, data: bytes) -> None:
        before = len(self.checker.violations)
        self.checker.on_apply(node, index, term, data)
        self._collect(before)

    def on_violation(self, node: int, message: str) -> None:
        self._violate("invariant-assertion", message)

    def _collect(self, before: int) -> None:
        for v in self.checker.violations[before:]:
            self._violate(v.kind.value, str(v))

    def _violate(self, checker: str, message: str) -> None:
        self.loop.trace(f"VIOLATION {message}")
        self.violations.append(f"t={self.loop.now}us {message}")
        if checker not in self.caught_by:
            self.caught_by.append(checker)

    def buggify_crash(self, node: int, delay_us: int) -> None:
        if self.nemesis.active:
            self.loop.after(delay_us, self.nemesis.crash_now, node)

    def restart(self, node_id: int) -> None:
        self._start(self.nodes[node_id])

    def _start(self, node: SimNode) -> None:
        started = node.start()
        corrupted = node.id in self.nemesis.corrupted
        if started and corrupted:
            self._violate(
                "corruption-detection", f"n{node.id} started from a disk with a corrupted record"
            )
        elif not started and not corrupted:
            self._violate(
                "recovery", f"n{node.id} refuses to start from an intact disk: {node.failed_reason}"
            )

    def _on_ok(self, f: Func, invoked_at: int) -> None:
        if f != Func.READ and self.heal_time is not None and invoked_at >= self.heal_time:
            self.live = True

    # -- phases ------------------------------------------------------------------------------

    def run(self) -> SimResult:
        opts = self.opts
        self.loop.trace(f"options {opts.describe()}")
        with logs_in_trace(self.loop, "quorumdb.storage"):
            self._run_phases()
        return self._result()

    def _run_phases(self) -> None:
        opts = self.opts
        for n in self.nodes.values():
            self._start(n)
        for c in self.clients.values():
            c.start()
        self.nemesis.start()
        self.loop.run_until(opts.fault_phase_us, stop=lambda: bool(self.violations))
        if not self.violations:
            self._heal()
            self._liveness()
        if not self.violations:
            self._drain_and_converge()
            self._final_checks()

    def _heal(self) -> None:
        self.nemesis.active = False
        net = self.net
        net.heal()
        net.unclog_all()
        net.loss = 0.0
        net.duplicate = 0.0
        self.heal_time = self.loop.now
        self.loop.trace("heal")
        for n in self.nodes.values():
            if not n.up and n.failed_reason is None and n.id not in self.nemesis.corrupted:
                self._start(n)
            elif n.up and n.paused_until > self.loop.now:
                n.resume_now()

    def _liveness(self) -> None:
        deadline = self.loop.now + self.opts.liveness_budget_us
        self.loop.run_until(deadline, stop=lambda: self.live or bool(self.violations))
        if not self.live and not self.violations:
            leaders = [n.id for n in self.nodes.values() if n.is_leader]
            up = [n.id for n in self.nodes.values() if n.up]
            self._violate(
                "liveness",
                f"no liveness: no new write committed within {self.opts.liveness_budget_us}us "
                f"of the heal (up={up}, leaders={leaders})",
            )

    def _drain_and_converge(self) -> None:
        self.clients_running = False
        self.loop.run_until(self.loop.now + _DRAIN_US, stop=lambda: bool(self.violations))
        deadline = self.loop.now + _CONVERGE_US
        self.loop.run_until(deadline, stop=self._converged)

    def _converged(self) -> bool:
        if self.violations:
            return True
        up = [n for n in self.nodes.values() if n.up and n.raw is not None]
        if not up:
            return True
        commits = {n.raw.raft.raft_log.committed for n in up if n.raw is not None}
        applied = {n.applied for n in up}
        return len(commits) == 1 and applied == commits

    def _final_checks(self) -> None:
        logs = {n.id: n.log_entries() for n in self.nodes.values() if n.up}
        before = len(self.checker.violations)
        self.checker.check_logs(logs)
        self._collect(before)
        history = history_from_events(self.recorder.events)
        result = check_linearizable(history)
        if not result.ok:
            self._violate("linearizability", f"history is not linearizable:\n{result}")

    def _result(self) -> SimResult:
        ops = {"ok": 0, "fail": 0, "info": 0}
        for e in self.recorder.events:
            if e["type"] in ops:
                ops[e["type"]] += 1
        stats = {
            "events": self.loop.events,
            "sim_us": self.loop.now,
            "messages": self.net.stats["sent"],
            "dropped": self.net.stats["dropped"] + self.net.stats["blocked"],
            "leaders": self.leaders_elected,
            "committed": self.checker.committed_count,
            "ops_ok": ops["ok"],
            "ops_fail": ops["fail"],
            "ops_info": ops["info"],
            **{f"nemesis_{k}": v for k, v in sorted(self.nemesis.counts.items())},
        }
        return SimResult(
            seed=self.opts.seed,
            options=self.opts,
            violations=self.violations,
            caught_by=self.caught_by,
            trace_digest=self.loop.digest(),
            history=self.recorder.events,
            trace_lines=self.loop.lines,
            stats=stats,
        )


def run(opts: SimOptions, *, keep_trace: bool = False) -> SimResult:
    """Run one simulation."""
    return Simulation(opts, keep_trace=keep_trace).run()
