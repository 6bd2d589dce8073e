"""What the simulator's transaction workloads share: clients of the real coordinators.

Each workload (`sim.bank_workload`, `sim.list_append_workload`) runs clients as coroutines
over the host's `Pending` answers (`host.pending.spawn`) and the event loop's timers, never
wall time, so a run stays a function of its seed. A client picks a random live node and
uses its `kv.transactions.TxnCoordinator`, as a user's client picks an endpoint; an answer
that never comes (a crashed node) is given up after a deadline, as a socket timeout would.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar, TypeVar

from quorumdb.host.pending import Pending, spawn
from quorumdb.kv.node_kv import node_kv
from quorumdb.kv.transactions import TxnCoordinator
from quorumdb.sim.host_node import HostNode
from quorumdb.sim.loop import EventLoop

__all__ = ["TimedOutError", "TxnClients"]

_T = TypeVar("_T")


class TimedOutError(Exception):
    """No answer in time (the workload's own deadline, as a client's socket timeout)."""


class TxnClients:
    """The plumbing of a transaction workload; `checker` names its violations."""

    checker: ClassVar[str]

    def __init__(
        self,
        *,
        loop: EventLoop,
        nodes: dict[int, HostNode],
        rng: random.Random,
        violate: Callable[[str, str], None],
        running: Callable[[], bool],
    ) -> None:
        """What it needs of the simulation: its event loop, its nodes, a seeded `rng` of its
        own, where violations go (checker, message), and whether clients still run (False
        once the heal began)."""
        self.loop = loop
        self.nodes = nodes
        self.rng = rng
        self.violate = violate
        self.running = running
        self.open = 0  # transactions begun and not yet ended
        self.seen_ts = 0  # the newest commit timestamp any answer carried

    # -- nodes -------------------------------------------------------------------------------

    def attach(self, node: HostNode) -> None:
        """A node (re)started: its coordinator recovers expired records, as the runtime's."""
        assert node.host is not None
        node_kv(node.host).transactions.start_recovery()

    def _pick(self) -> tuple[str, TxnCoordinator] | None:
        up = [n for _, n in sorted(self.nodes.items()) if n.host is not None]
        if not up:
            return None
        node = self.rng.choice(up)
        assert node.host is not None
        return f"n{node.id}#{node.incarnation}", node_kv(node.host).transactions

    # -- plumbing ----------------------------------------------------------------------------

    def _go(self, coro: Coroutine[Pending[Any], None, None]) -> None:
        def ended(p: Pending[None]) -> None:
            err = p.exception()
            if err is not None:
                name = self.checker
                self.violate(name, f"{name}: the workload failed: {type(err).__name__}: {err}")

        spawn(coro).add_done_callback(ended)

    def _sleep(self, us: int) -> Pending[None]:
        p: Pending[None] = Pending()
        self.loop.after(us, p.set_result, None)
        return p

    def _within(self, p: Pending[_T], us: int) -> Pending[_T]:
        """`p`'s answer, or `TimedOutError` if none comes in `us` (a crashed node never
        answers)."""
        out: Pending[_T] = Pending()

        def answered(p: Pending[_T]) -> None:
            err = p.exception()
            if err is not None:
                out.set_exception(err)
            else:
                out.set_result(p.result())

        p.add_done_callback(answered)
        self.loop.after(us, lambda: out.set_exception(TimedOutError(f"no answer in {us} us")))
        return out

    def _draw(self, bounds: tuple[int, int]) -> int:
        lo, hi = bounds
        return lo if hi <= lo else self.rng.randrange(lo, hi)
