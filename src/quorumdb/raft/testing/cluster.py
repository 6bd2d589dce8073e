"""An in-memory Raft cluster: `MemoryStorage` per node, a message queue, optional drop filters.

Each call is explicit (`tick`, `process_ready`, `deliver`, `stabilize`) so tests can stop at any
point between persisting and sending, or between sending and delivering.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from quorumdb.raft.codec import decode_conf_change
from quorumdb.raft.config import Config
from quorumdb.raft.core import Rng
from quorumdb.raft.errors import ProposalDroppedError, StepPeerNotFoundError
from quorumdb.raft.messages import ConfState, Entry, EntryType, Message, ReadState
from quorumdb.raft.raw_node import RawNode
from quorumdb.raft.ready import Apply, Persist, Ready, Send, effects
from quorumdb.raft.storage import MemoryStorage

__all__ = ["Cluster", "Filter"]

Filter = Callable[[Message], bool]
"""Return True to drop a message."""


class Cluster:
    """Nodes 1..n (or the given ids) sharing one deterministic message queue."""

    def __init__(
        self,
        ids: Iterable[int],
        *,
        seed: int = 0,
        config: Callable[[int], Config] | None = None,
        voters: Iterable[int] | None = None,
    ) -> None:
        self.ids = sorted(ids)
        vs = tuple(sorted(voters)) if voters is not None else tuple(self.ids)
        self._config = config or (lambda i: Config(id=i))
        self._seed = seed
        self.storages: dict[int, MemoryStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.conf_states: dict[int, ConfState] = {}
        self.queue: list[Message] = []
        self.filters: list[Filter] = []
        self.apply_hook: Callable[[int, list[Entry]], None] | None = None
        for i in self.ids:
            self.storages[i] = MemoryStorage(ConfState(voters=vs))
            self.applied[i] = []
            self.read_states[i] = []
            self._boot(i)

    def _boot(self, i: int) -> None:
        rng = random.Random(self._seed * 1000 + i)
        self.nodes[i] = RawNode(self._config(i), self.storages[i], Rng(rng.randrange))

    def add_node(self, i: int, conf_state: ConfState) -> None:
        """Start a new, empty node (to be added by a conf change) that knows `conf_state`."""
        self.ids = sorted({*self.ids, i})
        self.storages[i] = MemoryStorage(conf_state)
        self.applied[i] = []
        self.read_states[i] = []
        self._boot(i)

    def restart(self, i: int) -> None:
        """Crash and restart node i from its storage (everything persisted survives)."""
        self.queue = [m for m in self.queue if m.to != i]
        self._boot(i)

    # -- driving -----------------------------------------------------------------------------

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[i].tick()

    def process_ready(self, i: int) -> Ready | None:
        """Handle one Ready of node i per the driver contract; return it (None if idle)."""
        node = self.nodes[i]
        if not node.has_ready():
            return None
        rd = node.ready()
        st = self.storages[i]
        # The driver contract's own ordering (`raft.ready.effects`), as the host follows it.
        for effect in effects(rd):
            if isinstance(effect, Send):
                self.queue.extend(effect.messages)
            elif isinstance(effect, Persist):
                if effect.snapshot is not None:
                    st.apply_snapshot(effect.snapshot)
                if effect.entries:
                    st.append(effect.entries)
                if effect.hard_state is not None:
                    st.set_hard_state(effect.hard_state)
            elif isinstance(effect, Apply):
                self._apply(i, rd)
            else:
                node.advance(effect.ready)
        return rd

    def _apply(self, i: int, rd: Ready) -> None:
        node = self.nodes[i]
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                self.conf_states[i] = node.apply_conf_change(decode_conf_change(e.data))
        if rd.committed_entries:
            self.applied[i].extend(rd.committed_entries)
            if self.apply_hook is not None:
                self.apply_hook(i, rd.committed_entries)
        self.read_states[i].extend(rd.read_states)

    def deliver(self, to: int | None = None) -> int:
        """Deliver queued messages (all, or those for `to`); return how many arrived."""
        if to is None:
            batch, self.queue = self.queue, []
        else:
            batch = [m for m in self.queue if m.to == to]
            self.queue = [m for m in self.queue if m.to != to]
        n = 0
        for m in batch:
            if m.to not in self.nodes or any(f(m) for f in self.filters):
                continue
            try:
                self.nodes[m.to].step(m)
            except (StepPeerNotFoundError, ProposalDroppedError):
                # Expected outcomes a driver ignores (etcd's node.go does the same): a late
                # response from a node just removed from the configuration, or a proposal
                # forwarded to a node that is no longer leader.
                continue
            n += 1
        return n

    def stabilize(self, max_rounds: int = 10_000) -> None:
        """Process readies and deliver messages until the cluster is quiet."""
        for _ in range(max_rounds):
            busy = False
            for i in self.ids:
                while self.process_ready(i) is not None:
                    busy = True
            if self.queue:
                self.deliver()
                busy = True
            if not busy:
                return
        raise AssertionError("cluster did not stabilize")

    def campaign(self, i: int) -> None:
        self.nodes[i].campaign()
        self.stabilize()

    def leader(self) -> int | None:
        leads = [i for i in self.ids if self.nodes[i].is_leader]
        assert len(leads) <= 1 or len({self.nodes[i].raft.term for i in leads}) == len(leads)
        if not leads:
            return None
        return max(leads, key=lambda i: self.nodes[i].raft.term)

    def isolate(self, i: int) -> None:
        self.filters.append(lambda m: i in (m.from_, m.to))

    def heal(self) -> None:
        self.filters.clear()
