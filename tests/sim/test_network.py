"""SimNet: partitions (symmetric, one-way, bridge, heal), ordering, loss, duplication, clogging.

Every test drives a real `EventLoop` with a seeded `random.Random` and records what arrived
and when; nothing sleeps.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from quorumdb.sim.loop import EventLoop
from quorumdb.sim.network import SimNet

FOREVER_US = 10**12


def _net(seed: int = 1, **kw: Any) -> SimNet:
    settings: dict[str, Any] = {
        "latency_min_us": 100,
        "latency_mean_us": 1_000,
        "loss": 0.0,
        "duplicate": 0.0,
        "fifo": True,
    }
    settings.update(kw)
    return SimNet(EventLoop(), random.Random(seed), **settings)


class Inbox:
    """Records (arrival time, payload) of every delivery."""

    def __init__(self, loop: EventLoop) -> None:
        self.loop = loop
        self.got: list[tuple[int, object]] = []

    def deliver(self, payload: object) -> None:
        self.got.append((self.loop.now, payload))

    @property
    def payloads(self) -> list[object]:
        return [p for _, p in self.got]


def _reachable(net: SimNet, src: int, dst: int, **kw: Any) -> bool:
    """Send one message and run the loop: did it arrive?"""
    inbox = Inbox(net.loop)
    accepted = net.send(src, dst, inbox.deliver, "ping", **kw)
    net.loop.run_until(net.loop.now + FOREVER_US)
    assert accepted == bool(inbox.got)
    return bool(inbox.got)


# -- partitions ------------------------------------------------------------------------------


def test_a_symmetric_split_blocks_both_ways_and_keeps_each_side_connected() -> None:
    net = _net()
    net.partition([[1, 2], [3]])
    assert not _reachable(net, 1, 3)
    assert not _reachable(net, 3, 1)
    assert not _reachable(net, 2, 3)
    assert _reachable(net, 1, 2)
    assert _reachable(net, 2, 1)
    assert net.is_blocked(3, 2)
    assert not net.is_blocked(1, 2)


def test_a_one_way_cut_blocks_only_that_direction() -> None:
    net = _net()
    net.cut_one_way(1, 2)
    assert net.is_blocked(1, 2)
    assert not net.is_blocked(2, 1)
    assert not _reachable(net, 1, 2)
    assert _reachable(net, 2, 1)
    assert _reachable(net, 1, 3)


@pytest.mark.parametrize(
    "sides",
    [
        [[1, 2], [4, 5]],  # the nemesis's shape: the bridge is on neither side
        [[1, 2, 3], [4, 5]],  # the bridge on one side
        [[1, 2, 3], [3, 4, 5]],  # Jepsen's shape: the bridge on both sides
    ],
    ids=["outside", "one-side", "both-sides"],
)
def test_a_bridge_node_reaches_both_sides_which_cannot_reach_each_other(
    sides: list[list[int]],
) -> None:
    net = _net()
    net.partition(sides, bridge=3)
    for other in (1, 2, 4, 5):
        assert _reachable(net, 3, other)
        assert _reachable(net, other, 3)
    for a, b in [(1, 4), (4, 1), (2, 5), (5, 2)]:
        assert not _reachable(net, a, b), f"{a}->{b}"


def test_heal_restores_every_link() -> None:
    net = _net()
    net.partition([[1], [2, 3]])
    net.cut_one_way(2, 3)
    net.heal()
    for src, dst in [(1, 2), (2, 1), (1, 3), (3, 1), (2, 3), (3, 2)]:
        assert not net.is_blocked(src, dst)
        assert _reachable(net, src, dst)


def test_client_links_ignore_partitions() -> None:
    net = _net()
    net.partition([[1], [2]])
    net.cut_one_way(-1, 1)
    assert not _reachable(net, -1, 1)
    assert _reachable(net, -1, 1, partitionable=False)
    assert _reachable(net, 1, -1, partitionable=False)


# -- ordering --------------------------------------------------------------------------------


def _send_burst(
    net: SimNet, links: list[tuple[int, int]], count: int
) -> dict[tuple[int, int], Inbox]:
    """Send `count` numbered messages on each link, a few microseconds apart."""
    inboxes = {link: Inbox(net.loop) for link in links}
    for i in range(count):
        for link in links:
            net.send(*link, inboxes[link].deliver, i)
        net.loop.run_until(net.loop.now + 3)
    net.loop.run_until(net.loop.now + FOREVER_US)
    return inboxes


def test_fifo_links_deliver_in_send_order_under_random_delays() -> None:
    net = _net(seed=7, latency_min_us=10, latency_mean_us=5_000, fifo=True)
    inboxes = _send_burst(net, [(1, 2), (2, 1), (1, 3)], 200)
    for link, inbox in inboxes.items():
        assert inbox.payloads == list(range(200)), link
        times = [t for t, _ in inbox.got]
        assert times == sorted(times)


def test_non_fifo_links_reorder() -> None:
    # Seed 7 and the same sends as the FIFO test above: without FIFO the random delays
    # reorder the messages, so the FIFO test is not passing by accident.
    net = _net(seed=7, latency_min_us=10, latency_mean_us=5_000, fifo=False)
    inbox = _send_burst(net, [(1, 2)], 200)[(1, 2)]
    assert inbox.payloads != list(range(200))
    assert sorted(inbox.payloads) == list(range(200)), "reordered, but nothing lost or added"


def test_every_delay_is_at_least_the_minimum_latency() -> None:
    net = _net(seed=3, latency_min_us=700, latency_mean_us=50, fifo=False)
    inbox = Inbox(net.loop)
    for i in range(100):
        net.send(1, 2, inbox.deliver, i)
    net.loop.run_until(FOREVER_US)
    assert len(inbox.got) == 100
    assert min(t for t, _ in inbox.got) >= 700


# -- loss and duplication --------------------------------------------------------------------


@pytest.mark.parametrize("loss", [0.05, 0.2, 0.5])
def test_loss_drops_about_the_configured_fraction(loss: float) -> None:
    sends = 10_000
    net = _net(seed=11, loss=loss, fifo=False)
    inbox = Inbox(net.loop)
    accepted = sum(net.send(1, 2, inbox.deliver, i) for i in range(sends))
    net.loop.run_until(FOREVER_US)
    dropped = sends - len(inbox.got)
    assert accepted == len(inbox.got)
    assert net.stats["dropped"] == dropped
    # Binomial(10_000, p): the standard deviation is at most 50, so +-250 is five of them.
    assert abs(dropped - loss * sends) < 250, dropped


def test_no_loss_means_nothing_is_dropped() -> None:
    net = _net(seed=11, loss=0.0, fifo=False)
    inbox = Inbox(net.loop)
    assert all(net.send(1, 2, inbox.deliver, i) for i in range(1_000))
    net.loop.run_until(FOREVER_US)
    assert sorted(inbox.payloads) == list(range(1_000))
    assert net.stats["dropped"] == 0


def test_duplicate_delivers_every_message_twice_on_peer_links() -> None:
    net = _net(seed=5, duplicate=1.0, fifo=False)
    inbox = Inbox(net.loop)
    for i in range(100):
        net.send(1, 2, inbox.deliver, i)
    net.loop.run_until(FOREVER_US)
    assert sorted(inbox.payloads) == sorted(list(range(100)) * 2)
    assert net.stats["duplicated"] == 100


def test_duplicate_copies_about_the_configured_fraction() -> None:
    net = _net(seed=5, duplicate=0.2, fifo=False)
    inbox = Inbox(net.loop)
    for i in range(5_000):
        net.send(1, 2, inbox.deliver, i)
    net.loop.run_until(FOREVER_US)
    extra = len(inbox.got) - 5_000
    assert extra == net.stats["duplicated"]
    assert abs(extra - 1_000) < 150, extra  # sd ~28


# -- clogging --------------------------------------------------------------------------------


def _arrivals(net: SimNet, src: int, dst: int, count: int) -> list[int]:
    inbox = Inbox(net.loop)
    for i in range(count):
        net.send(src, dst, inbox.deliver, i)
    net.loop.run_until(FOREVER_US)
    arrival = {payload: t for t, payload in inbox.got}
    assert sorted(arrival) == list(range(count))
    return [arrival[i] for i in range(count)]


def test_clog_adds_the_extra_delay_to_traffic_in_and_out_of_the_node() -> None:
    # Same seed, same sends: the random delays are equal, so the clog is the difference.
    base = _arrivals(_net(seed=9, fifo=False), 1, 2, 20)
    for src, dst in [(1, 2), (2, 1)]:
        net = _net(seed=9, fifo=False)
        net.clog(2, 50_000)
        clogged = _arrivals(net, src, dst, 20)
        assert [c - b for c, b in zip(clogged, base, strict=True)] == [50_000] * 20


def test_clogging_both_ends_adds_both_delays_and_unclog_removes_them() -> None:
    base = _arrivals(_net(seed=9, fifo=False), 1, 2, 20)
    net = _net(seed=9, fifo=False)
    net.clog(1, 7_000)
    net.clog(2, 50_000)
    net.clog(3, 1_000_000)  # not on the link: no effect
    both = _arrivals(net, 1, 2, 20)
    assert [c - b for c, b in zip(both, base, strict=True)] == [57_000] * 20
    net = _net(seed=9, fifo=False)
    net.clog(2, 50_000)
    net.unclog_all()
    assert _arrivals(net, 1, 2, 20) == base


# -- counters --------------------------------------------------------------------------------


def test_stats_count_every_send_and_its_fate() -> None:
    net = _net(seed=2, loss=0.3, duplicate=0.3, fifo=False)
    net.partition([[1], [2]])
    inbox = Inbox(net.loop)
    for i in range(300):
        net.send(1, 2, inbox.deliver, i)  # blocked
    for i in range(1_000):
        net.send(1, 3, inbox.deliver, i)
    for i in range(100):
        net.send(-1, 2, inbox.deliver, i, partitionable=False)  # never blocked or duplicated
    net.loop.run_until(FOREVER_US)
    stats = net.stats
    assert stats["sent"] == 1_400
    assert stats["blocked"] == 300
    assert 0 < stats["dropped"] < 1_100
    assert stats["duplicated"] > 0
    delivered = 1_100 - stats["dropped"] + stats["duplicated"]
    assert len(inbox.got) == delivered
