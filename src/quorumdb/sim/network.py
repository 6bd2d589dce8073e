"""A simulated network: latency, loss, duplication, reordering, partitions and clogging.

Links are directed, so one-way partitions are expressible. With `fifo` set, each directed link
delivers in send order (like one TCP connection); otherwise independent random delays reorder
messages. A clogged node's traffic, in and out, is delayed by an extra amount. NB: a duplicate
is scheduled outside the FIFO order (at twice a fresh delay), so with duplication on, a FIFO
link may deliver the copy before later messages, as a reconnecting TCP sender that resends
could; Raft must (and does) tolerate it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Any

from quorumdb.sim.loop import EventLoop

__all__ = ["SimNet"]


class SimNet:
    __slots__ = (
        "_blocked",
        "_last_delivery",
        "clogged_us",
        "duplicate",
        "fifo",
        "latency_mean_us",
        "latency_min_us",
        "loop",
        "loss",
        "rng",
        "stats",
    )

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        *,
        latency_min_us: int,
        latency_mean_us: int,
        loss: float,
        duplicate: float,
        fifo: bool,
    ) -> None:
        self.loop = loop
        self.rng = rng
        self.latency_min_us = latency_min_us
        self.latency_mean_us = latency_mean_us
        self.loss = loss
        self.duplicate = duplicate
        self.fifo = fifo
        self._blocked: set[tuple[int, int]] = set()
        self.clogged_us: dict[int, int] = {}
        self._last_delivery: dict[tuple[int, int], int] = {}
        self.stats = {"sent": 0, "dropped": 0, "duplicated": 0, "blocked": 0}

    # -- faults ------------------------------------------------------------------------------

    def partition(self, sides: Iterable[Iterable[int]], *, bridge: int | None = None) -> None:
        """Cut every link between different sides (both ways); a bridge node talks to all."""
        groups = [set(s) for s in sides]
        for a_pos, a in enumerate(groups):
            for b in groups[a_pos + 1 :]:
                for x in a:
                    for y in b:
                        if bridge not in (x, y):
                            self._blocked.add((x, y))
                            self._blocked.add((y, x))

    def cut_one_way(self, src: int, dst: int) -> None:
        self._blocked.add((src, dst))

    def heal(self) -> None:
        self._blocked.clear()

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def clog(self, node: int, extra_us: int) -> None:
        self.clogged_us[node] = extra_us

    def unclog_all(self) -> None:
        self.clogged_us.clear()

    # -- delivery ----------------------------------------------------------------------------

    def _delay(self, src: int, dst: int) -> int:
        d = self.latency_min_us + int(self.rng.expovariate(1.0 / self.latency_mean_us))
        return d + self.clogged_us.get(src, 0) + self.clogged_us.get(dst, 0)

    def send(
        self,
        src: int,
        dst: int,
        deliver: Callable[..., None],
        *args: Any,
        partitionable: bool = True,
    ) -> bool:
        """Schedule `deliver(*args)` at the receiver; False if the message was lost.

        Client links pass `partitionable=False`: clients stand outside the cluster's
        partitions, and, like one TCP connection, their links never duplicate a message (a
        duplicated request could be proposed after its first copy was refused, which a real
        client cannot observe).
        """
        self.stats["sent"] += 1
        if partitionable and (src, dst) in self._blocked:
            self.stats["blocked"] += 1
            return False
        rng = self.rng
        if self.loss and rng.random() < self.loss:
            self.stats["dropped"] += 1
            return False
        when = self.loop.now + self._delay(src, dst)
        if self.fifo:
            link = (src, dst)
            when = max(when, self._last_delivery.get(link, 0))
            self._last_delivery[link] = when
        self.loop.at(when, deliver, *args)
        if partitionable and self.duplicate and rng.random() < self.duplicate:
            self.stats["duplicated"] += 1
            self.loop.at(self.loop.now + self._delay(src, dst) * 2, deliver, *args)
        return True
