"""The nemesis: injects the run's enabled faults at random moments of the fault phase.

Faults are kept to what a correct cluster must survive (TigerBeetle's "fault atlas" idea):
at most a minority of nodes ever get a corrupted disk (each such node refuses to restart and
stays down), and everything else is undone in the heal phase.
"""

from __future__ import annotations

import random
from typing import Protocol

from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet
from quorumdb.sim.node import SimNode
from quorumdb.sim.options import US_PER_MS, FaultKind, SimOptions

__all__ = ["Nemesis", "NemesisHost"]

PARTITION_OK = FaultKind.PARTITION

_ACTIONS = (
    FaultKind.PARTITION,
    FaultKind.CLOG,
    FaultKind.CRASH,
    FaultKind.PAUSE,
    FaultKind.CORRUPT,
    FaultKind.TRANSFER,
)


class NemesisHost(Protocol):
    loop: EventLoop
    net: SimNet
    nodes: dict[int, SimNode]

    def restart(self, node_id: int) -> None: ...


class Nemesis:
    def __init__(self, host: NemesisHost, opts: SimOptions, rng: random.Random) -> None:
        self.host = host
        self.opts = opts
        self.rng = rng
        self.actions = [a for a in _ACTIONS if a in opts.faults]
        self.corrupted: set[int] = set()
        self.active = True
        self.counts: dict[str, int] = {}

    def start(self) -> None:
        if self.actions:
            self._schedule()

    def _schedule(self) -> None:
        delay = int(self.rng.expovariate(1.0 / self.opts.nemesis_interval_us))
        self.host.loop.after(delay, self._act)

    def _act(self) -> None:
        if not self.active:
            return
        kind = self.rng.choice(self.actions)
        self.counts[kind.value] = self.counts.get(kind.value, 0) + 1
        getattr(self, f"_do_{kind.value}")()
        self._schedule()

    def _duration(self, lo_ms: int, hi_ms: int) -> int:
        return self.rng.randint(lo_ms, hi_ms) * US_PER_MS

    def _random_node(self) -> int:
        return self.rng.choice(sorted(self.host.nodes))

    def _victim(self) -> int:
        """The node to crash or pause: the leader when hunting leaders (or by chance)."""
        lead = self._leader()
        if lead is not None and (self.opts.hunt_leader or self.rng.random() < 0.5):
            return lead
        return self._random_node()

    def _do_partition(self) -> None:
        net = self.host.net
        ids = sorted(self.host.nodes)
        rng = self.rng
        net.heal()
        shapes = ("split", "isolate", "minority", "one-way", "bridge", "leader")
        shape = "leader" if self.opts.hunt_leader else rng.choice(shapes)
        shuffled = ids[:]
        rng.shuffle(shuffled)
        lead = self._leader()
        if shape == "leader" and lead is not None:
            # Jepsen's partition-leader: cut the leader off while clients can still reach it,
            # so it accepts writes that never commit (divergent suffixes, as in Figure 8).
            net.partition([[lead], [i for i in ids if i != lead]])
        elif shape == "split":
            cut = rng.randint(1, len(ids) - 1)
            net.partition([shuffled[:cut], shuffled[cut:]])
        elif shape == "isolate":
            net.partition([shuffled[:1], shuffled[1:]])
        elif shape == "minority":
            k = (len(ids) - 1) // 2
            net.partition([shuffled[:k], shuffled[k:]])
        elif shape == "one-way":
            for _ in range(rng.randint(1, len(ids))):
                a, b = rng.sample(ids, 2)
                net.cut_one_way(a, b)
        else:
            bridge = shuffled[0]
            rest = shuffled[1:]
            half = len(rest) // 2
            net.partition([rest[:half], rest[half:]], bridge=bridge)
        self.host.loop.trace(f"nemesis partition {shape}")
        self.host.loop.after(self._duration(100, 3_000), self._heal_partition)

    def _heal_partition(self) -> None:
        if self.active:
            self.host.net.heal()
            self.host.loop.trace("nemesis heal partition")

    def _do_clog(self) -> None:
        node = self._random_node()
        extra = self._duration(10, 300)
        self.host.net.clog(node, extra)
        self.host.loop.trace(f"nemesis clog n{node} {extra}")
        self.host.loop.after(self._duration(200, 2_000), self._unclog, node)

    def _unclog(self, node: int) -> None:
        if self.active:
            self.host.net.clogged_us.pop(node, None)

    def _leader(self) -> int | None:
        leaders = [n for n in self.host.nodes.values() if n.is_leader and n.raw is not None]
        if not leaders:
            return None
        return max(leaders, key=lambda n: n.raw.raft.term if n.raw is not None else 0).id

    def _do_crash(self) -> None:
        node = self.host.nodes[self._victim()]
        if not node.up:
            return
        node.crash(tear=self.rng.random() < 0.5)
        self.host.loop.after(self._duration(20, 2_000), self._restart, node.id)

    def on_new_leader(self, node_id: int) -> None:
        """When hunting leaders, sometimes cut a fresh leader off moments after it won.

        A buggify site: a leader that accepted a client write it could not replicate leaves a
        divergent suffix in its term, the raw material of Raft's Figure 8.
        """
        if not (self.active and self.opts.hunt_leader and PARTITION_OK in self.actions):
            return
        if self.rng.random() < 0.7:
            self.host.loop.after(self._duration(0, 20), self._isolate, node_id)

    def _isolate(self, node_id: int) -> None:
        if not self.active or not self.host.nodes[node_id].is_leader:
            return
        net = self.host.net
        net.heal()
        net.partition([[node_id], [i for i in sorted(self.host.nodes) if i != node_id]])
        self.host.loop.trace(f"nemesis isolate new leader n{node_id}")
        self.host.loop.after(self._duration(50, 1_000), self._heal_partition)

    def crash_now(self, node_id: int) -> None:
        """Crash a node at a moment chosen by a buggify site; restart it later."""
        node = self.host.nodes[node_id]
        if not self.active or not node.up:
            return
        self.counts["buggify_crash"] = self.counts.get("buggify_crash", 0) + 1
        node.crash(tear=self.rng.random() < 0.5)
        self.host.loop.after(self._duration(20, 2_000), self._restart, node_id)

    def _restart(self, node_id: int) -> None:
        if self.active and not self.host.nodes[node_id].up:
            self.host.restart(node_id)

    def _do_pause(self) -> None:
        self.host.nodes[self._victim()].pause(self._duration(50, 3_000))

    def _do_corrupt(self) -> None:
        if len(self.corrupted) >= (len(self.host.nodes) - 1) // 2:
            return
        node = self.host.nodes[self._random_node()]
        if not node.up or node.id in self.corrupted:
            return
        node.crash(tear=False)
        where = node.disk.corrupt()
        if where is None:
            self.host.loop.after(self._duration(20, 500), self._restart, node.id)
            return
        self.corrupted.add(node.id)
        self.host.loop.trace(f"nemesis corrupt n{node.id} {where[0]}@{where[1]}")
        self.host.loop.after(self._duration(20, 500), self._restart, node.id)

    def _do_transfer(self) -> None:
        lead = self._leader()
        if lead is None:
            return
        to = self.rng.choice([i for i in sorted(self.host.nodes) if i != lead])
        self.host.loop.trace(f"nemesis transfer n{lead}->n{to}")
        self.host.nodes[lead].transfer_leader(to)
