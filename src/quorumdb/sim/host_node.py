"""One simulated node running the real `NodeHost`: the simulator as the host's second driver.

Theory of operation. The host is the one users run, built as the runtime builds it
(`kv.node_kv.NodeKV`: `host.node_host` with the KV store plugged in): the controller group,
KV shards with the real `KVStateMachine`, sessions, snapshots by entries and bytes, the
shared WAL with group commit and the work done while a write runs. This module gives it a
simulated environment (`host.env.Env`):

- clock: the node's drifting `NodeClock` over the event loop's virtual time;
- timers: events on the loop, dropped if the node crashed meanwhile;
- network: the simulated network (`SimNet`: latency, loss, duplication, partitions), which
  hands Raft and service messages to the peer's current incarnation;
- syncer: the WAL write + fdatasync happens after a simulated disk latency (a distribution
  with a slow tail, so that rounds overlap and the mid-flight path runs); a crash before
  then loses the write, as a write still in the kernel's hands would be;
- disk: the real WAL and snapshot store over `SimFileSystem` (a crash loses unsynced data,
  maybe tearing it);
- wake: a pump event at the current time (one at most outstanding).

Ticks come from the node's own clock. A crash drops the host (its memory) and crashes the
disk; a restart builds a new host from what the disk kept, and a node whose recovery finds
corruption stays down, as a real one must. A pause (SIGSTOP) defers everything the process
would do (ticks, timers, deliveries, the end of its WAL write) to the moment it resumes, in
order. An exception out of the host is a failure of the node (fail-stop) and of the run:
the simulator reports it.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from quorumdb.host.config import Member, NodeConfig
from quorumdb.host.env import Env
from quorumdb.host.node_host import NodeHost
from quorumdb.host.wal_log import WalNodeLog
from quorumdb.kv.node_kv import NodeKV
from quorumdb.raft import Message, PlantedBug, RawNode
from quorumdb.sim.clock import NodeClock
from quorumdb.sim.disk import SimDisk
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet
from quorumdb.sim.options import DiskLatency
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.records import CorruptRecordError

__all__ = ["HostNode", "midflight_applied", "sim_member"]


def sim_member(node_id: int) -> Member:
    """A member whose addresses only name it (the simulated network routes by node id)."""
    return Member(node_id=node_id, raft=("sim", node_id), http=("sim", 10_000 + node_id))


@dataclass(frozen=True, slots=True)
class _GroupMessage:
    group: int
    message: Message


class HostNode:
    """A node of the simulated cluster: a disk, a clock, and (while up) a `NodeHost`."""

    def __init__(
        self,
        node_id: int,
        config: NodeConfig,
        *,
        loop: EventLoop,
        net: SimNet,
        nodes: dict[int, HostNode],
        clock: NodeClock,
        rng: random.Random,
        disk_latency: DiskLatency,
        on_started: Callable[[HostNode], None],
        on_failed: Callable[[HostNode, BaseException], None],
        planted_bugs: frozenset[PlantedBug] = frozenset(),
        crash_in_sync: Callable[[int, bool], None] | None = None,
        segment_bytes: int = 256 << 10,
    ) -> None:
        """`crash_in_sync(delay_us, votes)`: a buggify site, asked before every WAL write +
        fsync whether to crash the node `delay_us` into it (`votes`: the write persists a
        vote; None: never). `segment_bytes`: the
        WAL's segment size; small in the simulator, so that segments rotate and WAL pressure
        snapshots groups within a run (and the in-memory disk copies no 64 MiB preallocations)."""
        self.id = node_id
        self.config = config
        self.loop = loop
        self.net = net
        self.nodes = nodes
        self.clock = clock
        self.rng = rng
        self.disk = SimDisk(f"n{node_id}", random.Random(rng.getrandbits(64)))
        self.disk_latency = disk_latency
        self.on_started = on_started
        self.on_failed = on_failed
        self.planted_bugs = planted_bugs
        self.host: NodeHost | None = None
        self.incarnation = 0
        self.refused: str | None = None  # why recovery refused to start, if it did
        self._pump_due = False
        self.crash_in_sync = crash_in_sync
        # A buggify site: called when the host applied (and answered) entries while its own
        # WAL write was still in flight (the mid-flight path).
        self.after_midflight: Callable[[], None] | None = None
        self.segment_bytes = segment_bytes
        self.paused_until = 0  # virtual time a paused process resumes at
        self.retired = False  # removed from the cluster for good

    @property
    def up(self) -> bool:
        return self.host is not None

    # -- life ------------------------------------------------------------------------------------

    def start(self) -> None:
        """Recover from the disk and run (a fresh disk: a new node)."""
        assert self.host is None, f"node {self.id} is already running"
        self.incarnation += 1
        fs = SimFileSystem(self.disk)
        try:
            node_log = WalNodeLog.open(Path(self.disk.name), fs, segment_bytes=self.segment_bytes)
        except (CorruptRecordError, DurableStateError) as exc:
            self.refused = str(exc)
            self.loop.trace(f"n{self.id} refuses to start: {exc}")
            return
        kv = NodeKV(self.config, node_log, self._env(), planted_bugs=self.planted_bugs)
        self.host = kv.host
        self.host.running = True
        self.loop.trace(f"n{self.id} up #{self.incarnation}")
        self._schedule_tick(self.incarnation)
        self.on_started(self)
        self.wake()

    def crash(self, *, tear: bool) -> None:
        if self.host is None:
            return
        self.host = None
        self.incarnation += 1
        self.paused_until = 0
        self.disk.crash(tear=tear)
        self.loop.trace(f"n{self.id} crash tear={tear}")

    def pause(self, duration_us: int) -> None:
        """Stop the process for `duration_us` (SIGSTOP, a long GC pause): nothing it would
        do meanwhile happens until it resumes; messages to it wait in its socket buffers."""
        if self.host is None:
            return
        self.paused_until = max(self.paused_until, self.loop.now + duration_us)
        self.loop.trace(f"n{self.id} pause until {self.paused_until}")

    def _deferred(self, fn: Callable[..., None], *args: object) -> bool:
        """While paused, run this event again when the process resumes (in order)."""
        if self.paused_until > self.loop.now:
            self.loop.at(self.paused_until, fn, *args)
            return True
        return False

    def transfer_leader(self, gid: int, to: int) -> None:
        """Ask this node's replica of group `gid` to hand leadership to `to` (an admin call)."""
        host = self.host
        if host is not None and gid in host.groups:
            act = functools.partial(RawNode.transfer_leader, transferee=to)
            host.submit_action(host.groups[gid], act)

    # -- the environment -----------------------------------------------------------------------

    def _env(self) -> Env:
        incarnation = self.incarnation
        node = self

        class Clock:
            def monotonic(self) -> float:
                return node.clock.monotonic_us(node.loop.now) / 1e6

            def wall_ms(self) -> int:
                return node.clock.wall_us(node.loop.now) // 1000

        class Timers:
            def call_later(self, delay_s: float, fn: Callable[[], None]) -> Callable[[], None]:
                cell: list[Callable[[], None] | None] = [fn]
                reading = node.clock.monotonic_us(node.loop.now) + int(delay_s * 1e6)
                node.loop.at(node.clock.when_monotonic(reading), node._fire, incarnation, cell)

                def cancel() -> None:
                    cell[0] = None

                return cancel

        class Network:
            def send(self, group: int, m: Message) -> None:
                node.net.send(node.id, m.to, node._deliver_raft, m.to, group, m)

            def send_service(self, peer: int, channel: str, body: bytes) -> bool:
                node.net.send(node.id, peer, node._deliver_service, peer, channel, body)
                return True

            def add_peer(self, peer: int, addr: tuple[str, int]) -> None:
                pass  # the simulated network reaches every node by id

            def remove_peer(self, peer: int) -> None:
                pass

        class Syncer:
            def submit(
                self, work: Callable[[], float], done: Callable[[float | BaseException], None]
            ) -> None:
                us = node.disk_latency.draw(node.rng)
                if node.crash_in_sync is not None:
                    node.crash_in_sync(node.rng.randrange(us), node._writes_vote())
                node.loop.after(us, node._written, incarnation, work, done, us)

        return Env(
            clock=Clock(),
            timers=Timers(),
            network=Network(),
            syncer=Syncer(),
            rng=random.Random(self.rng.getrandbits(64)),
            wake=self.wake,
        )

    def _writes_vote(self) -> bool:
        """Does the WAL write in flight persist a vote (a node's promise in an election)?"""
        w = self.host._writing if self.host is not None else None
        if w is None:
            return False
        states = [rd.hard_state for _, rd in w.readies]
        states += [sa.hard_state for _, sa in w.appends]
        return any(hs is not None and hs.vote for hs in states)

    def _alive(self, incarnation: int) -> NodeHost | None:
        return self.host if incarnation == self.incarnation else None

    def _fire(self, incarnation: int, cell: list[Callable[[], None] | None]) -> None:
        if self._deferred(self._fire, incarnation, cell):
            return
        fn = cell[0]
        if fn is not None and self._alive(incarnation) is not None:
            self._guarded(fn)

    def _written(
        self,
        incarnation: int,
        work: Callable[[], float],
        done: Callable[[float | BaseException], None],
        us: int,
    ) -> None:
        if self._alive(incarnation) is None:
            return  # crashed before the write reached the disk
        if self._deferred(self._written, incarnation, work, done, us):
            return

        def finish() -> None:
            work()
            done(us / 1e6)

        self._guarded(finish)

    def _deliver_raft(self, to: int, group: int, m: Message) -> None:
        target = self.nodes[to]
        if target._deferred(self._deliver_raft, to, group, m):
            return
        if target.host is not None:
            target._guarded(lambda: target._host().deliver(self.id, [_GroupMessage(group, m)]))

    def _deliver_service(self, to: int, channel: str, body: bytes) -> None:
        target = self.nodes[to]
        if target._deferred(self._deliver_service, to, channel, body):
            return
        if target.host is not None:
            target._guarded(lambda: target._host().deliver_service(self.id, channel, body))

    def _host(self) -> NodeHost:
        assert self.host is not None
        return self.host

    def wake(self) -> None:
        if not self._pump_due and self.host is not None:
            self._pump_due = True
            self.loop.at(self.loop.now, self._pump, self.incarnation)

    def _pump(self, incarnation: int) -> None:
        if self._deferred(self._pump, incarnation):
            return
        self._pump_due = False
        host = self._alive(incarnation)
        if host is not None:
            watch = host._writing is not None and self.after_midflight is not None
            before = midflight_applied(host) if watch else 0
            self._guarded(host.pump)
            if watch and self.host is host and midflight_applied(host) > before:
                assert self.after_midflight is not None
                self.after_midflight()

    def _schedule_tick(self, incarnation: int) -> None:
        reading = self.clock.monotonic_us(self.loop.now) + self.config.tick_ms * 1000
        self.loop.at(self.clock.when_monotonic(reading), self._tick, incarnation)

    def _tick(self, incarnation: int) -> None:
        host = self._alive(incarnation)
        if host is None or self._deferred(self._tick, incarnation):
            return
        self._guarded(host.tick)
        self._schedule_tick(incarnation)

    def _guarded(self, fn: Callable[[], object]) -> None:
        """Run host code; an exception fails the node (fail-stop) and is reported."""
        host = self.host
        if host is None:
            return
        try:
            fn()
        except Exception as exc:
            host.failed(exc)
            self.host = None
            self.incarnation += 1
            self.loop.trace(f"n{self.id} failed: {type(exc).__name__}: {exc}")
            self.on_failed(self, exc)


def midflight_applied(host: NodeHost) -> int:
    """Entries the host's groups applied while its own WAL write ran (this incarnation)."""
    return sum(g.stats.midflight_applied for g in host.groups.values())
