"""Kafka benchmark: quorumdb's Kafka API (acks=all, RF 3) against NATS JetStream (R3), same run.

Both systems run as 3 server processes on loopback, side by side; the loads alternate between
them, so that a busy machine slows both alike and the ratio stays meaningful. 100-byte records.

- produce, 1 and 6 partitions: a confluent-kafka (librdkafka) producer, acks=all,
  idempotent, linger.ms=5, librdkafka's default batching, records without keys, sending as fast
  as its queue allows for `--seconds`; records/s and MB/s count acknowledged records up to the
  end of the final flush. NATS: one file-storage stream with replicas=3 per partition (a stream
  is JetStream's unit of replication, like a partition's Raft group), nats-py publishing with a
  reply inbox and up to `--nats-window` acks outstanding (what the Go client's PublishAsync
  does); "vs NATS" is the records/s ratio at the same partition count.
- consume: every record of the topic from the start - a confluent-kafka consumer in its own
  group; NATS an ordered push consumer per stream. Rate from the first record to the last.
- end-to-end latency, produce -> consumed: `--lat-rate` records/s carrying their send time,
  read by a consumer waiting at the end of the topic/stream (Kafka's include linger.ms=5).

Server CPU: user+system time of the 3 server processes (from /proc) per acknowledged record;
client cores: the benchmark process's CPU time (all its threads) over the produce run.
`--profile DIR` runs the quorumdb nodes under cProfile (QUORUMDB_PROFILE_DIR) and prints
each node's top functions at the end (throughput drops under the profiler).

    python bench/kafka_bench.py            # ~2 minutes
    python bench/kafka_bench.py --quick    # ~1 minute

Every server process runs in its own session and its process group is stopped on exit (also on
Ctrl-C / SIGTERM); the data directories are removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import pstats
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quorumdb.cli.local_cluster import KAFKA_PORT_OFFSET, start_cluster, wait_ready

RECORD_BYTES = 100
PARTITIONS = (1, 6)
TARGET_RATIO = 1.0  # issue 5: at least NATS's publish rate
GOAL_RATIO, GOAL_MBPS = 10.0, 50.0  # the project-wide goal
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"

console = Console(width=140)


@dataclass
class Result:
    """One system at one partition count."""

    system: str
    partitions: int
    produced: int = 0
    produce_s: float = 0.0
    produce_errors: int = 0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0
    in_topic: int = 0  # acknowledged records in the topic (warm-up included)
    consumed: int = 0
    consume_s: float = 0.0
    e2e: list[float] = field(default_factory=list)
    lat_sent: int = 0

    @property
    def rate(self) -> float:
        return self.produced / self.produce_s if self.produce_s > 0 else 0.0

    @property
    def consume_rate(self) -> float:
        return self.consumed / self.consume_s if self.consume_s > 0 else 0.0


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


# -- processes and ports --------------------------------------------------------------------------


class Procs:
    """Process groups started here; `stop_all` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def stop_all(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in self.pids:
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def cpu_s(pids: list[int]) -> float:
    """User + system CPU seconds of the processes, from /proc."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def free_base_port(offsets: list[int]) -> int:
    """A base P with P+o free for every o, below Linux's ephemeral port range (32768+)."""
    for _ in range(200):
        base = random.randrange(20000, 30000, 10)
        socks = []
        try:
            for o in offsets:
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", base + o))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range found")


# -- quorumdb (confluent-kafka) -------------------------------------------------------------------


@dataclass
class Quorum:
    bootstrap: str
    pids: list[int]


def start_quorumdb(root: Path, procs: Procs) -> Quorum:
    k = KAFKA_PORT_OFFSET
    base = free_base_port([1, 2, 3, 101, 102, 103, k + 1, k + 2, k + 3])
    lc = start_cluster(root / "quorumdb", nodes=3, base_port=base, shards=4, fsync=True)
    procs.pids += lc.pids.values()
    wait_ready(lc, timeout_s=60.0)
    bootstrap = ",".join(f"{m.kafka[0]}:{m.kafka[1]}" for m in lc.nodes.values() if m.kafka)
    return Quorum(bootstrap=bootstrap, pids=list(lc.pids.values()))


def create_topic(q: Quorum, name: str, partitions: int) -> None:
    """Create the topic (RF 3); wait until each partition has its preferred leader and full ISR
    (quorumdb hands leadership to the first replica shortly after creating the topic)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": q.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 3)])[name].result(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5).topics.get(name)
        if md and md.error is None and len(md.partitions) == partitions:
            parts = md.partitions.values()
            if all(p.leader == p.replicas[0] and len(p.isrs) == 3 for p in parts):
                return
        time.sleep(0.1)


def producer_conf(q: Quorum) -> dict[str, Any]:
    return {
        "bootstrap.servers": q.bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
    }


def kafka_produce(q: Quorum, topic: str, seconds: float, res: Result) -> None:
    from confluent_kafka import KafkaException, Producer

    p = Producer(producer_conf(q))
    ok = errors = 0

    def on_delivery(err: Any, _msg: Any) -> None:
        nonlocal ok, errors
        if err is None:
            ok += 1
        else:
            errors += 1

    value = os.urandom(RECORD_BYTES)
    for _ in range(5000):  # warm-up: connections, metadata, InitProducerId
        p.produce(topic, value, on_delivery=on_delivery)
    p.flush(60)
    warm, ok, errors = ok, 0, 0
    cpu0, client0 = cpu_s(q.pids), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    sent = 0
    while True:
        if not sent & 1023:
            p.poll(0)
            if time.perf_counter() >= deadline:
                break
        try:
            p.produce(topic, value, on_delivery=on_delivery)
            sent += 1
        except BufferError:  # the client's queue is full: wait for acks
            p.poll(0.001)
    left = p.flush(300)
    if left:
        raise KafkaException(f"{left} records still unacknowledged 300 s after the run")
    res.produce_s = time.perf_counter() - t0
    res.server_cpu_s = cpu_s(q.pids) - cpu0
    res.client_cpu_s = time.process_time() - client0
    res.produced, res.produce_errors, res.in_topic = ok, errors, warm + ok


def kafka_consume(q: Quorum, topic: str, res: Result) -> None:
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": q.bootstrap,
            "group.id": f"bench-{topic}-{random.getrandbits(32):x}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    got, first, last = 0, 0.0, 0.0
    idle_since = time.monotonic()
    try:
        while got < res.in_topic and time.monotonic() - idle_since < 15:
            n = sum(m.error() is None for m in c.consume(num_messages=10_000, timeout=0.5))
            if n:
                last = time.perf_counter()
                first = first or last
                got += n
                idle_since = time.monotonic()
    finally:
        c.close()
    res.consumed, res.consume_s = got, last - first


def kafka_latency(
    q: Quorum, topic: str, partitions: int, res: Result, *, rate: float, seconds: float
) -> None:
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    c = Consumer({"bootstrap.servers": q.bootstrap, "group.id": "bench-latency"})
    c.assign([TopicPartition(topic, i, OFFSET_END) for i in range(partitions)])
    clock = time.perf_counter_ns
    measure_from = 1 << 62  # warm-up records (the first second) are not counted
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                sent = int.from_bytes(m.value()[:8], "big")
                if sent >= measure_from:
                    res.e2e.append((clock() - sent) / 1e9)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    time.sleep(1.0)  # let the consumer reach the end of the partitions
    p = Producer(producer_conf(q))
    pad = os.urandom(RECORD_BYTES - 8)
    warm = int(rate)
    res.lat_sent = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(warm + res.lat_sent):
        if i == warm:
            measure_from = clock()
        while (delay := t0 + i / rate - time.perf_counter()) > 0:
            p.poll(delay)
        p.produce(topic, clock().to_bytes(8, "big") + pad)
    p.flush(30)
    deadline = time.monotonic() + 10
    while len(res.e2e) < res.lat_sent and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    reader.join(5)
    c.close()


# -- NATS JetStream (nats-py) ---------------------------------------------------------------------


@dataclass
class Nats:
    urls: list[str]
    pids: list[int]


def start_nats(root: Path, procs: Procs) -> Nats:
    base = free_base_port([1, 2, 3, 11, 12, 13])
    routes = ", ".join(f"nats-route://127.0.0.1:{base + 10 + j}" for j in (1, 2, 3))
    d = root / "nats"
    d.mkdir(parents=True)
    pids = []
    for i in (1, 2, 3):
        conf = d / f"n{i}.conf"
        conf.write_text(
            f"server_name: n{i}\nlisten: 127.0.0.1:{base + i}\n"
            f'jetstream {{ store_dir: "{d / f"n{i}"}" }}\n'
            f"cluster {{ name: bench, listen: 127.0.0.1:{base + 10 + i}, routes: [{routes}] }}\n"
        )
        with (d / f"n{i}.log").open("ab") as log:
            proc = subprocess.Popen(
                [NATS_SERVER, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        procs.pids.append(proc.pid)
        pids.append(proc.pid)
    return Nats(urls=[f"nats://127.0.0.1:{base + i}" for i in (1, 2, 3)], pids=pids)


def streams(partitions: int) -> list[tuple[str, str]]:
    """(stream, subject) per "partition"."""
    return [(f"P{partitions}_{k}", f"p{partitions}.{k}") for k in range(partitions)]


async def nats_connect(n: Nats) -> Any:
    import nats

    async def quiet(_exc: Exception) -> None:  # nats-py prints tracebacks by default
        pass

    return await nats.connect(n.urls, pending_size=64 << 20, error_cb=quiet)


async def nats_setup(n: Nats) -> None:
    """Wait for the JetStream cluster, create the R3 file streams, wait for their leaders."""
    from nats.js.api import StorageType, StreamConfig

    deadline = time.monotonic() + 60
    conn = None
    while conn is None:
        try:
            conn = await nats_connect(n)
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)
    js = conn.jetstream(timeout=10)
    for name, subject in [s for p in PARTITIONS for s in streams(p)]:
        config = StreamConfig(
            name=name, subjects=[subject], num_replicas=3, storage=StorageType.FILE
        )
        while True:  # the meta leader may not be elected yet
            try:
                await js.add_stream(config)
                info = await js.stream_info(name)
                if info.cluster and info.cluster.leader and len(info.cluster.replicas or []) == 2:
                    break
            except Exception:
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)
    await conn.close()


class Publisher:
    """Core-NATS publishes with a reply subject; JetStream's acks arrive on one wildcard
    inbox subscription; at most `window` outstanding (like Go's PublishAsync)."""

    def __init__(self, conn: Any, window: int) -> None:
        self.conn, self.window = conn, window
        self.inflight = self.ok = self.errors = self.sent = 0
        self.room = asyncio.Event()
        self.idle = asyncio.Event()
        self.inbox = ""

    async def start(self) -> None:
        self.inbox = self.conn.new_inbox()
        await self.conn.subscribe(
            self.inbox + ".*",
            cb=self._on_ack,
            pending_msgs_limit=1 << 22,
            pending_bytes_limit=1 << 30,
        )

    async def _on_ack(self, msg: Any) -> None:
        if msg.data.startswith(b'{"stream"') and b'"error"' not in msg.data:
            self.ok += 1
        else:
            self.errors += 1
        self.inflight -= 1
        self.room.set()
        if not self.inflight:
            self.idle.set()

    async def publish(self, subject: str, payload: bytes) -> None:
        while self.inflight >= self.window:
            self.room.clear()
            await self.room.wait()
        self.inflight += 1
        self.idle.clear()
        await self.conn.publish(subject, payload, reply=f"{self.inbox}.{self.sent}")
        self.sent += 1

    async def drain(self, timeout: float) -> None:
        await self.conn.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)


async def nats_produce(n: Nats, partitions: int, seconds: float, window: int, res: Result) -> None:
    conn = await nats_connect(n)
    subjects = [s for _, s in streams(partitions)]
    value = os.urandom(RECORD_BYTES)
    pub = Publisher(conn, window)
    await pub.start()
    for i in range(5000):  # warm-up
        await pub.publish(subjects[i % partitions], value)
    await pub.drain(30)
    pub.ok = pub.errors = 0
    cpu0, client0 = cpu_s(n.pids), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = 0
    while i & 255 or time.perf_counter() < deadline:
        await pub.publish(subjects[i % partitions], value)
        i += 1
    await pub.drain(60)
    res.produce_s = time.perf_counter() - t0
    res.server_cpu_s = cpu_s(n.pids) - cpu0
    res.client_cpu_s = time.process_time() - client0
    res.produced, res.produce_errors = pub.ok, pub.errors + pub.inflight
    await conn.close()


async def nats_consume(n: Nats, partitions: int, res: Result) -> None:
    conn = await nats_connect(n)
    js = conn.jetstream(timeout=30)
    for name, _ in streams(partitions):
        res.in_topic += (await js.stream_info(name)).state.messages
    done = asyncio.Event()
    first = last = 0.0

    async def on_msg(_msg: Any) -> None:
        nonlocal first, last
        last = time.perf_counter()
        first = first or last
        res.consumed += 1
        if res.consumed >= res.in_topic:
            done.set()

    for name, subject in streams(partitions):
        await js.subscribe(
            subject,
            stream=name,
            cb=on_msg,
            ordered_consumer=True,
            pending_msgs_limit=1 << 22,
            pending_bytes_limit=1 << 30,
        )
    seen = -1
    while not done.is_set() and res.consumed > seen:  # stop after 15 s without progress
        seen = res.consumed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 15)
    res.consume_s = last - first
    await conn.close()


async def nats_latency(n: Nats, partitions: int, rate: float, seconds: float, res: Result) -> None:
    from nats.js.api import DeliverPolicy

    conn = await nats_connect(n)
    js = conn.jetstream(timeout=30)
    clock = time.perf_counter_ns
    pub = Publisher(conn, 1 << 20)
    measure_from = 1 << 62  # warm-up records (the first second) are not counted

    async def on_msg(msg: Any) -> None:
        sent = int.from_bytes(msg.data[:8], "big")
        if sent >= measure_from:
            res.e2e.append((clock() - sent) / 1e9)

    for name, subject in streams(partitions):
        await js.subscribe(
            subject, stream=name, cb=on_msg, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW
        )
    await pub.start()
    pad = os.urandom(RECORD_BYTES - 8)
    warm = int(rate)
    res.lat_sent = int(rate * seconds)
    t0 = time.perf_counter()
    for i in range(warm + res.lat_sent):
        if i == warm:
            measure_from = clock()
        if (delay := t0 + i / rate - time.perf_counter()) > 0:
            await asyncio.sleep(delay)
        await pub.publish(streams(partitions)[i % partitions][1], clock().to_bytes(8, "big") + pad)
    await pub.drain(30)
    deadline = time.monotonic() + 10
    while len(res.e2e) < res.lat_sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await conn.close()


# -- report ---------------------------------------------------------------------------------------


def _ms(xs: list[float], q: float) -> str:
    return f"{pct(xs, q) * 1e3:.1f}" if xs else "-"


def print_report(results: list[Result], seconds: float, notes: list[str]) -> None:
    nats = {r.partitions: r for r in results if r.system == "NATS"}
    t = Table(
        title=f"{RECORD_BYTES}-byte records, RF 3 / R3, 3 servers each on loopback, "
        f"{seconds:g} s produce runs"
    )
    columns = (
        "system", "part.", "produce rec/s", "MB/s", "vs NATS", "server CPU µs/rec", "client cores",
        "consume rec/s", "consumed", "e2e p50 ms", "e2e p99 ms",
    )  # fmt: skip
    for col in columns:
        t.add_column(col, justify="left" if col == "system" else "right")
    for r in results:
        base = nats.get(r.partitions)
        vs = f"{r.rate / base.rate:.2f}x" if r.system != "NATS" and base and base.rate else ""
        t.add_row(
            r.system,
            str(r.partitions),
            f"{r.rate:,.0f}" + (f" ({r.produce_errors} errors)" if r.produce_errors else ""),
            f"{r.rate * RECORD_BYTES / 1e6:.2f}",
            vs,
            f"{r.server_cpu_s / r.produced * 1e6:.1f}" if r.produced else "-",
            f"{r.client_cpu_s / r.produce_s:.2f}" if r.produce_s else "-",
            f"{r.consume_rate:,.0f}",
            "all" if r.consumed == r.in_topic else f"{r.consumed:,} of {r.in_topic:,}",
            _ms(r.e2e, 0.5),
            _ms(r.e2e, 0.99),
        )
    console.print(t)
    for r in results:
        base = nats.get(r.partitions)
        if r.system == "NATS" or not base or not base.rate:
            continue
        ratio, mbps = r.rate / base.rate, r.rate * RECORD_BYTES / 1e6
        verdict = "meets" if ratio >= TARGET_RATIO else "MISSES"
        console.print(
            f"{r.partitions} partition(s): {ratio:.2f}x NATS - {verdict} the target >= "
            f"{TARGET_RATIO:g}x; project goal >= {GOAL_RATIO:g}x and >= {GOAL_MBPS:g} MB/s: "
            + ("met" if ratio >= GOAL_RATIO and mbps >= GOAL_MBPS else f"not met ({mbps:.1f} MB/s)")
        )
    for r in results:
        if len(r.e2e) < r.lat_sent:
            notes.append(
                f"{r.system}, {r.partitions} partition(s): the latency consumer received "
                f"{len(r.e2e)} of {r.lat_sent} records"
            )
    for note in notes:
        console.print(f"- {note}", highlight=False)


def print_profiles(d: Path, top: int = 15) -> None:
    for f in sorted(d.glob("node-*.prof")):
        out = io.StringIO()
        pstats.Stats(str(f), stream=out).sort_stats("tottime").print_stats(top)
        console.rule(f"cProfile {f.name} (event loop thread, by own time)")
        lines = out.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
        console.print("\n".join(lines[start:]), highlight=False, soft_wrap=True)


# -- main -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace, root: Path, procs: Procs) -> list[Result]:
    if args.profile:
        os.environ["QUORUMDB_PROFILE_DIR"] = str(Path(args.profile).resolve())
    q = start_quorumdb(root, procs)
    os.environ.pop("QUORUMDB_PROFILE_DIR", None)
    n = None
    if not args.no_nats:
        n = start_nats(root, procs)
        asyncio.run(nats_setup(n))
    results = []
    for parts in PARTITIONS:
        topic = f"bench-{parts}"
        create_topic(q, topic, parts)
        r = Result("quorumdb", parts)
        console.print(f"quorumdb, {parts} partition(s): produce", end="")
        kafka_produce(q, topic, args.seconds, r)
        console.print(f" {r.rate:,.0f}/s; consume", end="")
        kafka_consume(q, topic, r)
        console.print(f" {r.consume_rate:,.0f}/s; latency at {args.lat_rate:g}/s", end="")
        kafka_latency(q, topic, parts, r, rate=args.lat_rate, seconds=args.lat_seconds)
        console.print(f" e2e p50 {_ms(r.e2e, 0.5)} ms")
        results.append(r)
        if n is None:
            continue
        r = Result("NATS", parts)
        console.print(f"NATS,     {parts} stream(s):    publish", end="")
        asyncio.run(nats_produce(n, parts, args.seconds, args.nats_window, r))
        console.print(f" {r.rate:,.0f}/s; consume", end="")
        asyncio.run(nats_consume(n, parts, r))
        console.print(f" {r.consume_rate:,.0f}/s; latency at {args.lat_rate:g}/s", end="")
        asyncio.run(nats_latency(n, parts, args.lat_rate, args.lat_seconds, r))
        console.print(f" e2e p50 {_ms(r.e2e, 0.5)} ms")
        results.append(r)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="shorter runs (~1 minute)")
    ap.add_argument("--seconds", type=float, help="produce time per run (default 8; quick 3)")
    ap.add_argument("--lat-rate", type=float, default=500, help="records/s of the latency run")
    ap.add_argument("--lat-seconds", type=float, help="latency run length (default 5; quick 2)")
    ap.add_argument("--nats-window", type=int, default=4096, help="NATS acks outstanding")
    ap.add_argument("--no-nats", action="store_true", help="quorumdb only")
    ap.add_argument("--profile", metavar="DIR", help="cProfile the quorumdb nodes into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    args = ap.parse_args()
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.lat_seconds = args.lat_seconds or (2.0 if args.quick else 5.0)
    notes = []
    if not args.no_nats:
        try:
            import nats  # noqa: F401
        except ImportError:
            args.no_nats = True
            notes.append("NATS skipped: nats-py is not installed in this environment")
        if not Path(NATS_SERVER).exists():
            args.no_nats = True
            notes.append("NATS skipped: no nats-server binary (apt-get install nats-server)")

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    root = Path(tempfile.mkdtemp(prefix="kafka-bench-"))
    procs = Procs()
    load0 = os.getloadavg()[0]
    started = time.monotonic()
    try:
        results = run(args, root, procs)
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        procs.stop_all()
        if args.keep:
            console.print(f"data and logs kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    load1 = os.getloadavg()[0]
    notes += [
        "durability: quorumdb acknowledges acks=all after the Raft commit, each node having "
        "fdatasynced the entry (group commit); JetStream acknowledges after its Raft quorum "
        "has the message, without an fsync per message (default sync_interval 2 min)",
        "clients: confluent-kafka is librdkafka (C, own I/O threads); nats-py is pure-Python "
        "asyncio with pipelined publishes (the fastest nats-py mode found)",
        f"machine: {os.cpu_count()} CPUs, 1-minute load average {load0:.1f} at the start and "
        f"{load1:.1f} at the end (other work on the machine slows both systems alike; compare "
        "ratios from one run)",
        f"total {time.monotonic() - started:.0f} s",
    ]
    print_report(results, args.seconds, notes)
    if args.profile:
        print_profiles(Path(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
