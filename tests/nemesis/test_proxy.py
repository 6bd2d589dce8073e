"""The proxy network on real loopback sockets: what each link mode does to whole frames.

Each test stands in for the nodes with the two ends of a Raft connection: a sender that
writes a Hello and then frames, as `runtime.transport` does, and a listener that decodes
with the node's own `FrameReader`, which raises on anything but whole, valid frames. No
test waits for time to pass: each polls, with a deadline, for the counters or frames it
needs, and asserts on what arrived and in which order.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from quorumdb.cli.local_cluster import default_layout
from quorumdb.cli.port_range import reserve_base_port
from quorumdb.nemesis.proxy import (
    CUT,
    OPEN,
    LinkMode,
    LinkState,
    ProxyNetwork,
    link_modes,
)
from quorumdb.nemesis.schedule import Fault, Nemesis
from quorumdb.runtime.wire import (
    FrameError,
    FrameReader,
    Hello,
    ServiceMessage,
    encode_hello,
    encode_service,
)
from tests.nemesis.sockets import listening

# -- link modes per variant (pure) --------------------------------------------------------------


def _both(a: int, b: int) -> set[tuple[int, int]]:
    return {(a, b), (b, a)}


def test_isolate_cuts_every_link_to_and_from_the_node() -> None:
    modes = link_modes("isolate", (2,), [1, 2, 3], 0.0)
    assert modes == dict.fromkeys(_both(2, 1) | _both(2, 3), CUT)
    assert link_modes("isolate-leader", (2,), [1, 2, 3], 0.0) == modes


def test_majority_minority_cuts_the_minority_off_both_ways() -> None:
    modes = link_modes("majority-minority", (1, 4), [1, 2, 3, 4, 5], 0.0)
    assert set(modes) == {link for a in (1, 4) for b in (2, 3, 5) for link in _both(a, b)}
    assert set(modes.values()) == {CUT}


def test_a_bridge_splits_the_others_in_sorted_halves_that_only_it_joins() -> None:
    modes = link_modes("bridge", (3,), [1, 2, 3, 4, 5], 0.0)
    assert set(modes) == {link for a in (1, 2) for b in (4, 5) for link in _both(a, b)}
    assert not any(3 in link for link in modes), "the bridge talks to everyone"
    assert set(link_modes("bridge", (1,), [1, 2, 3], 0.0)) == _both(2, 3)


def test_one_way_cuts_one_direction_only() -> None:
    assert link_modes("one-way", (3, 1), [1, 2, 3], 0.0) == {(3, 1): CUT}


@pytest.mark.parametrize("variant", ["loss", "delay", "reorder"])
def test_degraded_variants_apply_their_amount_to_the_nodes_links(variant: str) -> None:
    modes = link_modes(variant, (1,), [1, 2, 3], 0.25)
    assert modes == dict.fromkeys(_both(1, 2) | _both(1, 3), LinkMode(LinkState(variant), 0.25))


@pytest.mark.parametrize(
    ("variant", "targets"),
    [
        ("flood", (1,)),
        ("isolate", (1, 2)),
        ("isolate", (4,)),
        ("one-way", (1, 1)),
        ("majority-minority", (1, 2, 3)),
        ("majority-minority", ()),
    ],
)
def test_variants_refuse_targets_that_do_not_fit(variant: str, targets: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=variant):
        link_modes(variant, targets, [1, 2, 3], 0.0)


# -- the two ends of a Raft connection ---------------------------------------------------------


def _body(k: int) -> bytes:
    """Frames of varied sizes, some far larger than one socket read, each checkable."""
    return bytes([k % 251]) * (16 + (k * 7919) % 150_000)


def _frame(k: int) -> bytes:
    return encode_service(ServiceMessage(channel=str(k), body=_body(k)))


class _Listener:
    """A node's Raft listener, reduced to what the tests look at."""

    def __init__(self) -> None:
        self.hellos: list[int] = []
        self.frames: list[tuple[int, int]] = []  # (sender, k), in arrival order
        self.errors: list[str] = []
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    def got(self, sender: int) -> list[int]:
        return [k for s, k in self.frames if s == sender]

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for t in list(self._conns):
            t.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        frames = FrameReader()
        sender = -1
        try:
            while data := await reader.read(1 << 16):
                frames.feed(data)
                while (f := frames.next_frame()) is not None:
                    if isinstance(f, Hello):
                        sender = f.node_id
                        self.hellos.append(sender)
                    elif isinstance(f, ServiceMessage):
                        k = int(f.channel)
                        if sender < 0 or f.body != _body(k):
                            self.errors.append(f"frame {k} torn or before the hello")
                        self.frames.append((sender, k))
        except FrameError as exc:
            self.errors.append(str(exc))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()


class _Sender:
    """A node's connection to one peer: a Hello, then frames."""

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> _Sender:
        _, self._writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer.write(encode_hello("c", self.node_id))
        await self._writer.drain()
        return self

    async def send(self, ks: range) -> None:
        assert self._writer is not None
        self._writer.write(b"".join(_frame(k) for k in ks))  # one write: many frames per read
        await self._writer.drain()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def _until(cond: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


class _Net:
    """A proxy network with a listener on every node's real Raft port."""

    def __init__(self, tmp_path: Path, nodes: int = 3) -> None:
        self.base, self._reservation = reserve_base_port(nodes)
        self.net = ProxyNetwork(tmp_path / "net", nodes, self.base, seed=1)
        self.layout = self.net.layout()
        self.listeners = {i: _Listener() for i in self.layout.members}

    async def __aenter__(self) -> _Net:
        try:
            for i, listener in self.listeners.items():
                await listener.start(self.layout.members[i].raft[1])
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        for listener in self.listeners.values():
            await listener.stop()
        await asyncio.to_thread(self.net.close)
        self._reservation.close()

    async def dial(self, i: int, j: int) -> _Sender:
        """Node i's connection to peer j, through the proxy its view names."""
        return await _Sender(i).connect(self.layout.view(i)[j].raft[1])

    async def fault(self, variant: str, nodes: tuple[int, ...], amount: float = 0.0) -> Fault:
        fault = Fault(0.0, Nemesis.PARTITION, variant, nodes, 1.0, amount)
        await asyncio.to_thread(self.net.start, fault, nodes)
        return fault

    def stat(self, i: int, j: int, name: str) -> int:
        value = getattr(self.net.stats()[(i, j)], name)
        assert isinstance(value, int)
        return value

    def errors(self) -> list[str]:
        return [e for listener in self.listeners.values() for e in listener.errors]


# -- frames through the proxies -----------------------------------------------------------------


def test_each_node_sees_its_peers_through_its_own_proxies(tmp_path: Path) -> None:
    base, reservation = reserve_base_port(3)
    net = ProxyNetwork(tmp_path / "net", 3, base)
    try:
        layout = net.layout()
        members = default_layout(3, base).members
        assert layout.members == members
        ports = set()
        for i in (1, 2, 3):
            for j, m in layout.view(i).items():
                assert (m.http, m.kafka, m.node_id) == (members[j].http, members[j].kafka, j)
                if i == j:
                    assert m == members[i]
                else:
                    assert m.raft[0] == "127.0.0.1" and m.raft != members[j].raft
                    ports.add(m.raft[1])
        assert len(ports) == 6, "one proxy per ordered pair"
    finally:
        net.close()
        reservation.close()


def test_open_links_pass_every_frame_in_order(tmp_path: Path) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            s12, s32 = await n.dial(1, 2), await n.dial(3, 2)
            await s12.send(range(60))
            await s32.send(range(100, 130))
            to2 = n.listeners[2]
            await _until(lambda: len(to2.frames) == 90, "90 frames at node 2")
            assert to2.got(1) == list(range(60)) and to2.got(3) == list(range(100, 130))
            assert sorted(to2.hellos) == [1, 3] and n.errors() == []
            assert n.stat(1, 2, "forwarded") == 61, "60 frames and the hello"

    asyncio.run(main())


def test_a_cut_drops_frames_and_a_heal_restores_the_same_connection(tmp_path: Path) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            s12, s21 = await n.dial(1, 2), await n.dial(2, 1)
            await s12.send(range(10))
            await _until(lambda: n.listeners[2].got(1) == list(range(10)), "frames before")
            await n.fault("isolate", (2,))
            await s12.send(range(10, 30))
            await s21.send(range(10, 30))
            late = await n.dial(3, 2)  # a connection made during the cut: its hello passes
            await late.send(range(5))
            await _until(
                lambda: (
                    (n.stat(1, 2, "dropped_cut"), n.stat(2, 1, "dropped_cut")) == (20, 20)
                    and n.stat(3, 2, "dropped_cut") == 5
                ),
                "the proxy to drop every frame of the cut",
            )
            await asyncio.to_thread(n.net.heal)
            assert set(n.net.modes().values()) == {OPEN}
            await s12.send(range(30, 40))
            await late.send(range(5, 8))
            await _until(lambda: len(n.listeners[2].frames) == 23, "frames after the heal")
            assert n.listeners[2].got(1) == [*range(10), *range(30, 40)]
            assert n.listeners[2].got(3) == [5, 6, 7] and 3 in n.listeners[2].hellos
            assert n.listeners[1].got(2) == [] and n.errors() == []

    asyncio.run(main())


def test_one_way_cuts_one_direction_and_stop_restores_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            s12, s21 = await n.dial(1, 2), await n.dial(2, 1)
            fault = await n.fault("one-way", (1, 2))
            assert n.net.modes()[(1, 2)] == CUT and n.net.modes()[(2, 1)] == OPEN
            await s12.send(range(20))
            await s21.send(range(20))
            await _until(lambda: n.listeners[1].got(2) == list(range(20)), "2 -> 1 frames")
            await _until(lambda: n.stat(1, 2, "dropped_cut") == 20, "1 -> 2 dropped")
            await asyncio.to_thread(n.net.stop, fault, (1, 2))
            await s12.send(range(20, 25))
            await _until(lambda: n.listeners[2].got(1) == list(range(20, 25)), "1 -> 2 again")
            assert n.errors() == []

    asyncio.run(main())


def test_loss_drops_whole_frames_and_never_the_hello(tmp_path: Path) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            s12 = await n.dial(1, 2)
            fault = await n.fault("loss", (2,), 0.4)
            await s12.send(range(200))
            await _until(
                lambda: n.stat(1, 2, "dropped_loss") + len(n.listeners[2].frames) == 200,
                "each of 200 frames dropped or delivered",
            )
            got = n.listeners[2].got(1)
            assert 0 < len(got) < 200, "a 40% loss over 200 frames drops some, not all"
            assert got == sorted(got), "loss does not reorder"
            await asyncio.to_thread(n.net.stop, fault, (2,))
            # A total loss still lets a new connection's hello through.
            await n.fault("loss", (3,), 1.0)
            s32 = await n.dial(3, 2)
            await s32.send(range(1000, 1010))
            await _until(lambda: n.stat(3, 2, "dropped_loss") == 10, "10 frames lost")
            await _until(lambda: 3 in n.listeners[2].hellos, "node 3's hello")
            assert n.listeners[2].got(3) == [] and n.errors() == []

    asyncio.run(main())


def test_delay_keeps_the_order_and_reorder_lets_frames_overtake(tmp_path: Path) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            s12, s13 = await n.dial(1, 2), await n.dial(1, 3)
            fault = await n.fault("delay", (2,), 30.0)
            await s12.send(range(50))
            await _until(lambda: len(n.listeners[2].frames) == 50, "50 delayed frames")
            assert n.listeners[2].got(1) == list(range(50))
            assert n.stat(1, 2, "held") == 50 and n.stat(1, 2, "overtaken") == 0
            await asyncio.to_thread(n.net.stop, fault, (2,))
            await n.fault("reorder", (3,), 100.0)
            await s13.send(range(100))  # in one write: all arrive within far less than 100 ms
            await _until(lambda: len(n.listeners[3].frames) == 100, "100 reordered frames")
            got = n.listeners[3].got(1)
            assert sorted(got) == list(range(100)), "reorder loses nothing"
            assert got != sorted(got) and n.stat(1, 3, "overtaken") > 0
            assert n.errors() == []

    asyncio.run(main())


def test_a_sender_is_held_while_its_receiver_is_down_and_joined_when_it_is_up(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with _Net(tmp_path) as n:
            down = n.listeners[2]
            await down.stop()  # node 2 "killed": nothing listens on its Raft port
            s12 = await n.dial(1, 2)
            await s12.send(range(10))
            await _until(lambda: n.stat(1, 2, "dropped_down") == 10, "frames to a down node")
            assert n.stat(1, 2, "refused") >= 1 and n.stat(1, 2, "connections") == 0
            up = n.listeners[2] = _Listener()  # node 2 "restarted"
            await up.start(n.layout.members[2].raft[1])
            await _until(lambda: up.hellos == [1], "the proxy to redial and pass the hello")
            await s12.send(range(10, 15))
            await _until(lambda: up.got(1) == list(range(10, 15)), "frames on the held connection")
            assert n.stat(1, 2, "connections") == 1 and n.errors() == []

    asyncio.run(main())


def test_close_frees_every_port_and_thread_and_writes_the_counters(tmp_path: Path) -> None:
    async def main() -> list[int]:
        async with _Net(tmp_path) as n:
            s12 = await n.dial(1, 2)  # a connection still open when the network closes
            await s12.send(range(3))
            await _until(lambda: len(n.listeners[2].frames) == 3, "3 frames")
            ports = [m.raft[1] for i in (1, 2, 3) for j, m in n.layout.view(i).items() if i != j]
        assert not listening(ports), "a proxy still listens"
        n.net.close()  # twice is fine
        n.net.heal()  # and so is a heal after close
        return ports

    before = set(threading.enumerate())
    ports = asyncio.run(main())
    assert not [t for t in set(threading.enumerate()) - before if t.name == "quorumdb-proxy"]
    links = json.loads((tmp_path / "net" / "links.json").read_text())
    assert sorted(links) == ["1->2", "1->3", "2->1", "2->3", "3->1", "3->2"]
    assert sorted(v["port"] for v in links.values()) == sorted(ports)
    assert links["1->2"]["forwarded"] == 4 and links["1->2"]["connections"] == 1
