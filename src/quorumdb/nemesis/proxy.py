"""The proxy network mode: a frame-aware, fault-injecting TCP proxy for every ordered pair.

Theory of operation. A node dials one connection per peer and frames flow one way only,
dialler to listener (`runtime.transport`), so the link i->j is exactly the connections
node i opens to peer j. For each ordered pair the run gets one listening proxy on
loopback, and node i's config names that proxy as peer j's Raft address
(`Layout.views`); the members (where nodes really listen, where clients go) stay those
of `default_layout`. HTTP and Kafka traffic is never proxied: as in Jepsen, the faults
are between the nodes.

Each link has a mode (`LinkMode`): open; cut (every frame dropped); lossy (whole frames
dropped with probability `amount`, from a seeded RNG); delayed (each frame held about
`amount` ms, order kept); reordering (each frame held a random 0..`amount` ms, so frames
overtake each other). The proxy reads whole frames (`length u32 LE | payload`, as in
`runtime.wire`) and only ever forwards or drops a frame entire: the receiving node's
`FrameReader` sees a valid stream whatever the fault. The first frame of a connection
(the Hello) always passes, so the receiver knows who is talking.

A cut keeps the connections and drops what they carry, as a partitioned switch port
does; a new connection made during a cut is accepted and sends only its Hello. So a node
sees no error, only silence, and a healed link carries the very next frame: nothing
waits for the transport's reconnection back-off. Frames already held for a delay when a
cut begins are dropped when their time comes (they were on the wire).

A receiving node that is down (killed, or not started yet) does not answer the proxy's
dial. The proxy then keeps the sender's connection, drops what it sends, and redials
with back-off (at most `_REDIAL_MAX_S` apart); once the receiver answers it gets the
Hello and the frames that follow. A receiver that goes away mid-connection closes both
sides, so the sender sees its connection go and redials, as it would without a proxy.

The proxies run on an event loop of their own, in a thread started by the constructor
and joined by `close()`: the run calls `asyncio.run` twice and starts faults from worker
threads. Every control call is handed to that loop and waits until it took effect. Held
frames are bounded per connection (`_HELD_FRAMES_MAX`, `_HELD_BYTES_MAX`): past that
the proxy stops reading, and TCP pushes back on the sending node, whose queue is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import json
import logging
import random
import struct
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from quorumdb.cli.local_cluster import Layout, default_layout
from quorumdb.nemesis.schedule import Fault, Nemesis
from quorumdb.runtime.wire import FRAME_BYTES_MAX

__all__ = ["CUT", "OPEN", "LinkMode", "LinkState", "LinkStats", "ProxyNetwork", "link_modes"]

log = logging.getLogger("quorumdb.nemesis.proxy")

Link = tuple[int, int]  # (from node, to node): node `from` dials node `to`
T = TypeVar("T")

_HOST = "127.0.0.1"
_LEN = struct.Struct("<I")
_HELD_FRAMES_MAX = 4096  # per connection, frames held for a delay
_HELD_BYTES_MAX = 16 << 20  # per connection; one larger frame is still let through alone
_DELAY_JITTER = 0.2  # a delayed frame waits amount ms +/- 20%
_CONTROL_TIMEOUT_S = 10.0
_BIND_ATTEMPTS_MAX = 32
_READ_BYTES = 1 << 16
_REDIAL_MIN_S = 0.02  # a receiver that is down is redialled with back-off, up to:
_REDIAL_MAX_S = 0.5  # the most a restarted receiver waits to hear from its peers


class LinkState(Enum):
    OPEN = "open"
    CUT = "cut"
    LOSS = "loss"
    DELAY = "delay"
    REORDER = "reorder"


@dataclass(frozen=True, slots=True)
class LinkMode:
    """What a link does to its frames; `amount`: loss fraction, or delay in ms."""

    state: LinkState
    amount: float = 0.0

    def __post_init__(self) -> None:
        if self.state == LinkState.LOSS:
            assert 0.0 <= self.amount <= 1.0, f"loss fraction {self.amount} outside 0..1"
        else:
            assert self.amount >= 0.0, f"negative amount {self.amount}"


OPEN = LinkMode(LinkState.OPEN)
CUT = LinkMode(LinkState.CUT)


@dataclass(slots=True)
class LinkStats:
    """Counters of one link over the run (written to `links.json` on close)."""

    connections: int = 0  # connections made to the receiving node
    refused: int = 0  # dials of the receiving node that failed (it was down)
    dropped_down: int = 0  # frames sent while the receiving node did not answer
    forwarded: int = 0  # frames written to the receiving node, Hellos included
    dropped_cut: int = 0
    dropped_loss: int = 0
    held: int = 0  # frames delayed or reordered
    overtaken: int = 0  # frames written after a frame that arrived later


def link_modes(
    variant: str, targets: tuple[int, ...], nodes: Iterable[int], amount: float
) -> dict[Link, LinkMode]:
    """The links a partition variant changes, and how (see `schedule.VARIANTS`).

    Raises:
        ValueError: an unknown variant, or targets that do not fit it.
    """
    everyone = sorted(nodes)
    if not set(targets) <= set(everyone):
        raise ValueError(f"{variant}: nodes {targets} are not all among {everyone}")

    def between(a: Iterable[int], b: Iterable[int], mode: LinkMode) -> dict[Link, LinkMode]:
        side_b = list(b)
        return {link: mode for x in a for y in side_b if x != y for link in ((x, y), (y, x))}

    match variant:
        case "isolate" | "isolate-leader":
            _expect(variant, targets, 1)
            return between(targets, everyone, CUT)
        case "majority-minority":
            if not targets or len(targets) >= len(everyone):
                raise ValueError(f"majority-minority needs a proper subset, got {targets}")
            return between(targets, [n for n in everyone if n not in targets], CUT)
        case "bridge":
            _expect(variant, targets, 1)
            others = [n for n in everyone if n != targets[0]]
            half = len(others) // 2
            return between(others[:half], others[half:], CUT)
        case "one-way":
            _expect(variant, targets, 2)
            if targets[0] == targets[1]:
                raise ValueError(f"one-way needs two different nodes, got {targets}")
            return {(targets[0], targets[1]): CUT}
        case "loss" | "delay" | "reorder":
            _expect(variant, targets, 1)
            return between(targets, everyone, LinkMode(LinkState(variant), amount))
    raise ValueError(f"unknown partition variant {variant!r}")


def _expect(variant: str, targets: tuple[int, ...], count: int) -> None:
    if len(targets) != count:
        raise ValueError(f"{variant} takes {count} node(s), got {targets}")


class ProxyNetwork:
    """A proxy per ordered pair of nodes, with faults set per link.

    Args:
        workdir: where `links.json` (per-link counters) is written on close.
        nodes: the cluster size; nodes are 1..nodes, as `default_layout` numbers them.
        base_port: the cluster's base port (`default_layout`); the proxies take free
            ports the system picks.
        seed: seeds each link's RNG (loss draws, delays); `network.open_network` passes
            the run's seed. Which frames a draw meets depends on timing anyway.
    """

    kinds = frozenset({Nemesis.PARTITION})

    def __init__(self, workdir: Path, nodes: int, base_port: int, *, seed: int = 0) -> None:
        self.workdir = workdir
        self._layout = default_layout(nodes, base_port)
        self._nodes = sorted(self._layout.members)
        self._links = {
            (i, j): _Link(
                (i, j), self._layout.members[j].raft, random.Random(f"proxy-{seed}-{i}-{j}")
            )
            for i in self._nodes
            for j in self._nodes
            if i != j
        }
        self._ports: dict[Link, int] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="quorumdb-proxy", daemon=True
        )
        self._closed = False
        self._thread.start()
        try:
            self._ports = self._run(self._open_all)
        except BaseException:
            self.close()
            raise

    # -- the NetworkFaults interface ---------------------------------------------------------

    def layout(self) -> Layout:
        """The real members, and for each node i a view naming proxy (i->j) as j's Raft
        address."""
        members = self._layout.members
        views = {
            i: {
                j: m if j == i else dataclasses.replace(m, raft=(_HOST, self._ports[(i, j)]))
                for j, m in members.items()
            }
            for i in members
        }
        return Layout(members=members, views=views)

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        """Set the links `fault` changes (the targets are its nodes, the leader resolved);
        in effect when this returns."""
        changes = self._changes(fault, targets)
        self._do(lambda: self._set(changes))

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        """Open again the links `fault` changed."""
        changes = self._changes(fault, targets)
        self._do(lambda: self._set(dict.fromkeys(changes, OPEN)))

    def heal(self) -> None:
        """Open every link; a no-op once closed (the run heals on its way out)."""
        if not self._closed:
            self._do(lambda: self._set(dict.fromkeys(self._links, OPEN)))

    def close(self) -> None:
        """Stop every proxy (no listening socket or connection is left), join the thread,
        and write the per-link counters to `workdir/links.json`. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        try:
            self._run(self._close_all)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()
        self._write_stats()

    # -- introspection (reports and tests) ---------------------------------------------------

    def modes(self) -> dict[Link, LinkMode]:
        return self._do(lambda: {link: p.mode for link, p in self._links.items()})

    def stats(self) -> dict[Link, LinkStats]:
        return self._do(
            lambda: {link: dataclasses.replace(p.stats) for link, p in self._links.items()}
        )

    # -- handing work to the proxy thread ----------------------------------------------------

    def _changes(self, fault: Fault, targets: tuple[int, ...]) -> dict[Link, LinkMode]:
        if fault.kind != Nemesis.PARTITION:
            raise ValueError(f"the proxy network injects partitions, not {fault.kind.value}")
        return link_modes(fault.variant, targets, self._nodes, fault.amount)

    def _run(self, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run `work` on the proxy loop; wait for its result."""
        future = asyncio.run_coroutine_threadsafe(work(), self._loop)
        return future.result(_CONTROL_TIMEOUT_S)

    def _do(self, fn: Callable[[], T]) -> T:
        """Call `fn` on the proxy loop (it owns every link's state); wait for its result."""
        if self._closed:
            raise RuntimeError("the proxy network is closed")

        async def call() -> T:
            return fn()

        return self._run(call)

    def _set(self, changes: dict[Link, LinkMode]) -> None:
        for link in sorted(changes):
            self._links[link].mode = changes[link]

    async def _open_all(self) -> dict[Link, int]:
        m = self._layout.members.values()
        avoid = frozenset(a[1] for a in (*(x.raft for x in m), *(x.http for x in m)))
        avoid |= frozenset(x.kafka[1] for x in m if x.kafka is not None)
        return {link: await p.open(avoid) for link, p in sorted(self._links.items())}

    async def _close_all(self) -> None:
        await asyncio.gather(*(p.close() for p in self._links.values()))

    def _write_stats(self) -> None:
        doc = {
            f"{i}->{j}": {"port": self._ports.get((i, j)), **dataclasses.asdict(p.stats)}
            for (i, j), p in sorted(self._links.items())
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "links.json").write_text(json.dumps(doc, indent=2) + "\n")


class _Link:
    """The proxy of one ordered pair: a listener, its connections, the link's mode."""

    def __init__(self, link: Link, upstream: tuple[str, int], rng: random.Random) -> None:
        self.link = link
        self.upstream = upstream
        self.rng = rng
        self.mode = OPEN
        self.stats = LinkStats()
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    async def open(self, avoid: frozenset[int]) -> int:
        """Listen on a port the system picks (never one of `avoid`: the nodes' own ports,
        which are free until the nodes start); return it."""
        for _ in range(_BIND_ATTEMPTS_MAX):
            server = await asyncio.start_server(self._accept, _HOST, 0)
            port = server.sockets[0].getsockname()[1]
            assert isinstance(port, int) and port > 0
            if port not in avoid:
                self._server = server
                return port
            server.close()
            await server.wait_closed()
        raise OSError(f"no free port for the proxy {self.link[0]}->{self.link[1]}")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        assert not self._conns

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await _Connection(self, reader, writer).run()
        except (OSError, ConnectionError, asyncio.IncompleteReadError, _BadFrameError) as exc:
            log.debug("proxy %d->%d connection ended: %s", *self.link, exc)
        except asyncio.CancelledError:
            pass  # only `close()` cancels: end quietly, as the transport's handlers do
        finally:
            self._conns.discard(task)


class _BadFrameError(Exception):
    """A length prefix outside 1..FRAME_BYTES_MAX: not a node speaking `runtime.wire`."""


class _Connection:
    """One connection through a link: frames in from the sending node, out to the receiver.

    The receiver is dialled once the sender's Hello is in. While it does not answer (it is
    down: killed, or not started yet) the sender's connection is kept and what it sends is
    dropped, and the proxy redials with back-off: the sender sees a quiet peer rather than
    a connection refused on every redial. Once the receiver answers it gets the Hello, then
    the frames; when it goes away, both sides are closed and the sender redials.

    Frames wait in a heap by the time they are due (then by arrival), so delayed frames
    keep their order and reordered ones can overtake; open frames are due at once."""

    def __init__(
        self, link: _Link, down: asyncio.StreamReader, down_writer: asyncio.StreamWriter
    ) -> None:
        self.link = link
        self.down = down
        self.down_writer = down_writer
        self.up: asyncio.StreamWriter | None = None  # to the receiver, once it answered
        self.loop = asyncio.get_running_loop()
        self.held: list[tuple[float, int, bytes]] = []
        self.held_bytes = 0
        self.arrived = 0  # frames pushed so far: the heap's tie-break
        self.written_max = -1  # the latest arrival written so far
        self.last_due = 0.0
        self.wake = asyncio.Event()  # a frame was pushed
        self.room = asyncio.Event()  # a frame left the heap

    async def run(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        try:
            hello = await _read_frame(self.down)
            if hello is None:
                return
            # The first dial is awaited before reading on: what the sender writes meanwhile
            # waits in the socket, as it would on a direct connection.
            up_reader = await self._dial(hello)
            inbound = asyncio.create_task(self._inbound())
            tasks.append(inbound)
            if up_reader is None:
                redial = asyncio.create_task(self._redial(hello))
                tasks.append(redial)
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                if not redial.done():
                    inbound.result()  # the sender left (or failed) before the receiver answered
                    return
                up_reader = redial.result()
            outbound = asyncio.create_task(self._outbound())
            watch = asyncio.create_task(self._watch_receiver(up_reader))
            tasks += [outbound, watch]
            running = [inbound, outbound, watch]
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()  # an error ends the connection like an EOF, logged by the caller
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in (self.down_writer, self.up):
                if w is not None:
                    w.close()

    async def _dial(self, hello: bytes) -> asyncio.StreamReader | None:
        """Connect to the receiver and pass it the Hello; None if it does not answer."""
        try:
            up_reader, up = await asyncio.open_connection(*self.link.upstream)
        except OSError:
            self.link.stats.refused += 1
            return None
        self.up = up
        up.write(hello)
        await up.drain()
        self.link.stats.connections += 1
        self.link.stats.forwarded += 1
        return up_reader

    async def _redial(self, hello: bytes) -> asyncio.StreamReader:
        backoff_s = _REDIAL_MIN_S
        while True:
            await asyncio.sleep(backoff_s)
            if (up_reader := await self._dial(hello)) is not None:
                return up_reader
            backoff_s = min(2 * backoff_s, _REDIAL_MAX_S)

    async def _inbound(self) -> None:
        stats = self.link.stats
        while (frame := await _read_frame(self.down)) is not None:
            mode = self.link.mode
            if self.up is None:
                stats.dropped_down += 1
                continue
            if mode.state == LinkState.CUT:
                stats.dropped_cut += 1
                continue
            if mode.state == LinkState.LOSS and self.link.rng.random() < mode.amount:
                stats.dropped_loss += 1
                continue
            while self.held and (
                len(self.held) >= _HELD_FRAMES_MAX or self.held_bytes + len(frame) > _HELD_BYTES_MAX
            ):
                self.room.clear()
                await self.room.wait()
            if mode.state in (LinkState.DELAY, LinkState.REORDER):
                stats.held += 1
            self._push(frame, self._due(mode))

    def _due(self, mode: LinkMode) -> float:
        now = self.loop.time()
        if mode.state == LinkState.REORDER:
            due = now + self.link.rng.uniform(0.0, mode.amount / 1000.0)
        elif mode.state == LinkState.DELAY:
            jitter = self.link.rng.uniform(1.0 - _DELAY_JITTER, 1.0 + _DELAY_JITTER)
            due = max(now + mode.amount / 1000.0 * jitter, self.last_due)
        else:
            due = max(now, self.last_due)  # behind frames still held: the order is kept
        self.last_due = max(self.last_due, due)
        return due

    def _push(self, frame: bytes, due: float) -> None:
        heapq.heappush(self.held, (due, self.arrived, frame))
        self.arrived += 1
        self.held_bytes += len(frame)
        self.wake.set()

    async def _outbound(self) -> None:
        stats = self.link.stats
        while True:
            if not self.held:
                self.wake.clear()
                await self.wake.wait()
                continue
            wait_s = self.held[0][0] - self.loop.time()
            if wait_s > 0:
                self.wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait_s):
                        await self.wake.wait()
                continue
            _, arrival, frame = heapq.heappop(self.held)
            self.held_bytes -= len(frame)
            self.room.set()
            if self.link.mode.state == LinkState.CUT:
                stats.dropped_cut += 1
                continue
            if arrival < self.written_max:
                stats.overtaken += 1
            self.written_max = max(self.written_max, arrival)
            assert self.up is not None, "frames are only held once the receiver answered"
            self.up.write(frame)
            await self.up.drain()
            stats.forwarded += 1

    async def _watch_receiver(self, up_reader: asyncio.StreamReader) -> None:
        """Ends when the receiving node closes the connection (it stopped, or rejected a
        frame): the sending node must see the connection go, and redial."""
        while await up_reader.read(_READ_BYTES):
            pass  # a listener never writes; anything it does is not ours to forward


async def _read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """One whole frame, length prefix included; None at a clean end of stream."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise
        return None
    (n,) = _LEN.unpack(head)
    if not 1 <= n <= FRAME_BYTES_MAX:
        raise _BadFrameError(f"frame length {n} outside 1..{FRAME_BYTES_MAX}")
    return head + await reader.readexactly(n)
