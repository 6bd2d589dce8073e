"""The nemesis: injects the run's enabled faults at random moments of the fault phase.

Faults are kept to what a correct cluster must survive (TigerBeetle's "fault atlas" idea):
at most one node is down (crashed, or being replaced) at a time, at most a minority ever get
a corrupted disk (each such node refuses to restart and stays down), and everything else is
undone in the heal phase. Continuous faults (loss, duplication, reordering, clock drift, slow
disks, frequent snapshots) are settings of the run; this class schedules the discrete ones,
and the buggify crashes the nodes ask for (`crash_now`).
"""

from __future__ import annotations

import random
from typing import Protocol

from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.membership import Membership
from quorumdb.sim.network import SimNet
from quorumdb.sim.options import US_PER_MS, FaultKind, SimOptions

__all__ = ["Nemesis", "NemesisHost"]

_ACTIONS = (
    FaultKind.PARTITION,
    FaultKind.CLOG,
    FaultKind.CRASH,
    FaultKind.PAUSE,
    FaultKind.CORRUPT,
    FaultKind.TRANSFER,
    FaultKind.MEMBERSHIP,
)


class NemesisHost(Protocol):
    loop: EventLoop
    net: SimNet
    nodes: dict[int, HostNode]
    membership: Membership

    def restart(self, node_id: int) -> None: ...

    def leader_of(self, gid: int) -> HostNode | None: ...

    def group_ids(self) -> list[int]: ...


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

    def _count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    def _duration(self, lo_ms: int, hi_ms: int) -> int:
        return self.rng.randint(lo_ms, hi_ms) * US_PER_MS

    def _members(self) -> list[int]:
        """Nodes of the cluster now (founders and an added node; not retired ones)."""
        return sorted(i for i, n in self.host.nodes.items() if not n.retired)

    def _all_up(self) -> bool:
        return all(self.host.nodes[i].up for i in self._members() if i not in self.corrupted)

    def _leader(self) -> int | None:
        """The leader of a random group, if it has one."""
        gids = self.host.group_ids()
        if not gids:
            return None
        lead = self.host.leader_of(self.rng.choice(gids))
        return None if lead is None else lead.id

    def _victim(self) -> int:
        """The node to crash, pause or cut off: a leader when hunting leaders (or by chance)."""
        lead = self._leader()
        if lead is not None and (self.opts.hunt_leader or self.rng.random() < 0.5):
            return lead
        return self.rng.choice(self._members())

    # -- the network ---------------------------------------------------------------------------

    def _do_partition(self) -> None:
        net = self.host.net
        ids = self._members()
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
        elif shape in ("isolate", "leader"):
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
        self.host.loop.after(self._duration(100, 1_500), self._heal_partition)

    def _heal_partition(self) -> None:
        if self.active:
            self.host.net.heal()
            self.host.loop.trace("nemesis heal partition")

    def on_new_leader(self, node_id: int) -> None:
        """When hunting leaders, sometimes cut a fresh leader off moments after it won.

        A buggify site: a leader that accepted a client write it could not replicate leaves a
        divergent suffix in its term, the raw material of Raft's Figure 8.
        """
        if not (self.active and self.opts.hunt_leader and FaultKind.PARTITION in self.actions):
            return
        if self.rng.random() < 0.7:
            self.host.loop.after(self._duration(0, 20), self._isolate, node_id)

    def _isolate(self, node_id: int) -> None:
        if not self.active or not self.host.nodes[node_id].up:
            return
        net = self.host.net
        net.heal()
        net.partition([[node_id], [i for i in self._members() if i != node_id]])
        self._count("isolate_new_leader")
        self.host.loop.trace(f"nemesis isolate new leader n{node_id}")
        self.host.loop.after(self._duration(50, 1_000), self._heal_partition)

    def _do_clog(self) -> None:
        node = self.rng.choice(self._members())
        extra = self._duration(10, 300)
        self.host.net.clog(node, extra)
        self.host.loop.trace(f"nemesis clog n{node} {extra}")
        self.host.loop.after(self._duration(200, 2_000), self._unclog, node)

    def _unclog(self, node: int) -> None:
        if self.active:
            self.host.net.clogged_us.pop(node, None)

    # -- processes -----------------------------------------------------------------------------

    def _do_crash(self) -> None:
        if not self._all_up() or self.host.membership.busy:
            return  # one node down at a time; a membership change needs its nodes
        node = self.host.nodes[self._victim()]
        self._crash(node)

    def crash_now(self, node_id: int) -> None:
        """Crash a node at a moment chosen by a buggify site; restart it later."""
        node = self.host.nodes[node_id]
        if not self.active or not self._all_up() or self.host.membership.busy:
            return
        self._count("buggify_crash")
        self._crash(node)

    def _crash(self, node: HostNode) -> None:
        if not node.up:
            return
        node.crash(tear=self.rng.random() < 0.5)
        self.host.loop.after(self._duration(20, 1_000), self._restart, node.id)

    def _restart(self, node_id: int) -> None:
        node = self.host.nodes[node_id]
        if self.active and not node.up and not node.retired:
            self.host.restart(node_id)

    def _do_pause(self) -> None:
        node = self.host.nodes[self._victim()]
        if node.up:
            node.pause(self._duration(50, 2_000))

    def _do_corrupt(self) -> None:
        members = self._members()
        if len(self.corrupted) >= (len(members) - 1) // 2 or not self._all_up():
            return
        if self.host.membership.busy or not self._membership_settled(members):
            return
        node = self.host.nodes[self.rng.choice(members)]
        if node.id in self.host.membership.added:
            return  # the added node is removed later: it must be able to run
        node.crash(tear=False)
        where = node.disk.corrupt()
        if where is not None:
            self.corrupted.add(node.id)
            self.host.loop.trace(f"nemesis corrupt n{node.id} {where[0]}@{where[1]}")
        self.host.loop.after(self._duration(20, 500), self._restart, node.id)

    def _membership_settled(self, members: list[int]) -> bool:
        """Does every up node see exactly `members` as every group's voters? A node's loss
        for good (a corrupted disk) is survivable only against the configuration the
        survivors know: right after a removal some may still count the removed node."""
        want = tuple(members)
        for n in self.host.nodes.values():
            host = n.host
            if host is None:
                continue
            for gid in self.host.group_ids():
                g = host.groups.get(gid)
                if g is None or tuple(sorted(g.conf_state.voters)) != want:
                    return False
        return True

    # -- leadership and membership ---------------------------------------------------------------

    def _do_transfer(self) -> None:
        gids = self.host.group_ids()
        if not gids:
            return
        gid = self.rng.choice(gids)
        lead = self.host.leader_of(gid)
        if lead is None or lead.host is None:
            return
        to = self.rng.choice([i for i in self._members() if i != lead.id])
        self.host.loop.trace(f"nemesis transfer g{gid} n{lead.id}->n{to}")
        lead.transfer_leader(gid, to)

    def _do_membership(self) -> None:
        if self.corrupted or not self._all_up():
            return
        self.host.membership.step()
