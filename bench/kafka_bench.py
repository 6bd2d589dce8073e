"""Kafka benchmark: quorumdb's Kafka API (acks=all, RF 3) against NATS JetStream (R3), same run.

Both systems run as 3 server processes on loopback, side by side; the loads alternate between
them, so that a busy machine slows both alike and the ratio stays meaningful. Three sections,
all run by default; `--only SECTION` (repeatable) runs just those.

records - 100-byte records:
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

sizes - produce MB/s by record size: 1 KiB (1 and 6 partitions), 100 KiB and 1 MiB records
  (1 partition), for `--seconds` each, on the same clusters. The producer as above with
  batch.size 1 MiB, linger.ms 5 (0 for 1 MiB records: one record per batch),
  message.max.bytes 8 MiB, and at most 8 MiB produced and not yet acknowledged (its queue);
  topics with max.message.bytes 8 MiB. NATS: as above, max_payload 8 MB, a window of at most
  8 MiB. Records/s, MB/s of acknowledged values, p50/p99 ack latency (produce -> delivery
  report: mostly the 8 MiB queued over the throughput, since the runs saturate).

catch-up - a follower catching up from segments: a separate 3-node quorumdb cluster with
  snapshot_bytes 4 MiB (QUORUMDB_SNAPSHOT_BYTES) and 0.6-1.2 s election timeouts; an RF-3
  single-partition topic; kill -9 a follower of its leader, produce `--catch-up-mb` MiB of
  1 MiB records (acks=all), restart the follower, and time it until its /metrics show
  quorumdb_kafka_partitions_catching_up 0 with quorumdb_kafka_catch_up_bytes_total > 0 and its
  partition log is as long as the leader's. Reports MiB fetched from segments, the catch-up
  MB/s from restart and over the fetch alone (its node.log line "caught up from segments"),
  and each node's peak RSS (VmHWM).

Server CPU: user+system time of the 3 server processes (from /proc) per acknowledged record
(per MB in sizes); client cores: the benchmark process's CPU time (all its threads) over the
produce run. `--profile DIR` runs the records/sizes quorumdb nodes under cProfile
(QUORUMDB_PROFILE_DIR) and prints each node's top functions at the end (throughput drops under
the profiler).

    python bench/kafka_bench.py                  # ~3 minutes (8 s runs, catch-up 512 MiB)
    python bench/kafka_bench.py --quick          # ~1.5 minutes (3 s runs, catch-up 128 MiB)
    python bench/kafka_bench.py --only sizes --no-nats --seconds 2   # ~20 s
    python bench/kafka_bench.py --only catch-up --catch-up-mb 64     # ~10 s

Nodes run `sys.executable -m quorumdb.cli.main` with this process's environment: to bench a
checkout, set PYTHONPATH to its absolute src/. NATS needs nats-py (a dev dependency) and a
nats-server binary, which the script installs with apt-get when run as root; without them
only quorumdb runs, and the report says why.

Every server process runs in its own session and its process group is stopped on exit (also on
Ctrl-C / SIGTERM); the data directories are removed unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import os
import pstats
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from quorumdb.cli.local_cluster import (
    KAFKA_PORT_OFFSET,
    LocalCluster,
    node_environment,
    start_cluster,
    start_node,
    wait_ready,
)

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
    size: int = RECORD_BYTES
    settings: str = ""  # client settings, as printed in the report
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
    ack: list[float] = field(default_factory=list)  # produce -> acknowledged, seconds

    @property
    def mbps(self) -> float:
        return self.rate * self.size / 1e6

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
    cluster: LocalCluster


def start_quorumdb(
    root: Path, procs: Procs, name: str = "quorumdb", env: dict[str, str] | None = None
) -> Quorum:
    """3 nodes (fsync on), `env` (QUORUMDB_<KEY> settings) in their environment."""
    k = KAFKA_PORT_OFFSET
    base = free_base_port([1, 2, 3, 101, 102, 103, k + 1, k + 2, k + 3])
    with node_environment(env or {}):
        lc = start_cluster(root / name, nodes=3, base_port=base, shards=4, fsync=True)
    procs.pids += lc.pids.values()
    wait_ready(lc, timeout_s=60.0)
    wait_listening([m.kafka for m in lc.nodes.values() if m.kafka])
    return Quorum(bootstrap=kafka_bootstrap(lc), pids=list(lc.pids.values()), cluster=lc)


def wait_listening(addrs: list[tuple[str, int]], timeout_s: float = 30.0) -> None:
    """Until each address accepts a TCP connection (a node's Kafka listener may open after its
    HTTP API answers; librdkafka logs every refused connection)."""
    deadline = time.monotonic() + timeout_s
    for addr in addrs:
        while True:
            try:
                socket.create_connection(addr, timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)


def kafka_bootstrap(lc: LocalCluster, without: int | None = None) -> str:
    return ",".join(
        f"{m.kafka[0]}:{m.kafka[1]}"
        for i, m in sorted(lc.nodes.items())
        if m.kafka and i != without
    )


def create_topic(
    q: Quorum, name: str, partitions: int, config: dict[str, str] | None = None
) -> None:
    """Create the topic (RF 3); wait until each partition has its preferred leader and full ISR
    (quorumdb hands leadership to the first replica shortly after creating the topic)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": q.bootstrap})
    admin.create_topics([NewTopic(name, partitions, 3, config=config or {})])[name].result(30)
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


def warm_up_count(size: int) -> int:
    """Records sent before a measured run: 5,000, or 4 MiB of them if that is fewer."""
    return max(4, min(5000, (4 << 20) // size))


def produce_waiting(p: Any, topic: str, value: bytes, on_delivery: Any, **kw: Any) -> None:
    """`p.produce`, polling for acks while the client's queue is full."""
    while True:
        try:
            p.produce(topic, value, on_delivery=on_delivery, **kw)
            return
        except BufferError:
            p.poll(0.01)


def kafka_produce(
    q: Quorum,
    topic: str,
    seconds: float,
    res: Result,
    conf: dict[str, Any] | None = None,
    *,
    latencies: bool = False,
) -> None:
    """Produce `res.size`-byte records for `seconds`; `conf` adds to / overrides
    `producer_conf`. With `latencies`, each acknowledged record's latency (produce() to its
    delivery report) is kept in `res.ack` (a cost in the client's delivery callback)."""
    from confluent_kafka import KafkaException, Producer

    p = Producer({**producer_conf(q), **(conf or {})})
    ok = errors = 0
    ack = res.ack

    def on_delivery(err: Any, msg: Any) -> None:
        nonlocal ok, errors
        if err is None:
            ok += 1
            if latencies:
                ack.append(msg.latency())
        else:
            errors += 1

    value = os.urandom(res.size)
    for _ in range(warm_up_count(res.size)):  # warm-up: connections, metadata, InitProducerId
        produce_waiting(p, topic, value, on_delivery)
    p.flush(60)
    warm, ok, errors = ok, 0, 0
    ack.clear()
    # The deadline is checked every 1,024 records, or every record when they are large.
    mask = 1023 if res.size <= 1024 else 0
    cpu0, client0 = cpu_s(q.pids), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    sent = 0
    while True:
        if not sent & mask:
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


def _install_nats_server() -> str:
    """Install nats-server with apt-get when running as root; '' if it is there now, else
    why NATS is skipped."""
    if os.geteuid() != 0:
        return "no nats-server binary and not root (apt-get install nats-server)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "install", "-y", "nats-server"],
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "nats-server"],
    ):
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if cmd[1] == "install" and Path(NATS_SERVER).exists():
            return ""
    return "apt-get install nats-server failed"


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
            f"server_name: n{i}\nlisten: 127.0.0.1:{base + i}\nmax_payload: 8MB\n"
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


async def nats_setup(n: Nats, names: list[tuple[str, str]]) -> None:
    """Wait for the JetStream cluster, create the R3 file streams (stream, subject), wait for
    their leaders."""
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
    for name, subject in names:
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

    def __init__(self, conn: Any, window: int, ack: list[float] | None = None) -> None:
        self.conn, self.window = conn, window
        self.inflight = self.ok = self.errors = self.sent = 0
        self.room = asyncio.Event()
        self.idle = asyncio.Event()
        self.inbox = ""
        self.ack = ack  # if given: each acknowledged publish's latency, seconds
        self.sent_at: dict[int, float] = {}

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
            if self.ack is not None:
                sent = self.sent_at.pop(int(msg.subject.rpartition(".")[2]), None)
                if sent is not None:
                    self.ack.append(time.perf_counter() - sent)
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
        if self.ack is not None:
            self.sent_at[self.sent] = time.perf_counter()
        await self.conn.publish(subject, payload, reply=f"{self.inbox}.{self.sent}")
        self.sent += 1

    async def drain(self, timeout: float) -> None:
        await self.conn.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.idle.wait(), timeout)


async def nats_produce(
    n: Nats,
    partitions: int,
    seconds: float,
    window: int,
    res: Result,
    *,
    names: list[tuple[str, str]] | None = None,
    latencies: bool = False,
) -> None:
    """Publish `res.size`-byte messages for `seconds` to the streams `names` (default
    `streams(partitions)`), at most `window` unacknowledged; with `latencies`, ack latencies
    into `res.ack`."""
    conn = await nats_connect(n)
    subjects = [s for _, s in names or streams(partitions)]
    value = os.urandom(res.size)
    pub = Publisher(conn, window, res.ack if latencies else None)
    await pub.start()
    for i in range(warm_up_count(res.size)):  # warm-up
        await pub.publish(subjects[i % partitions], value)
    await pub.drain(30)
    pub.ok = pub.errors = 0
    res.ack.clear()
    mask = 255 if res.size <= 1024 else 0  # how often the deadline is checked
    cpu0, client0 = cpu_s(n.pids), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + seconds
    i = 0
    while i & mask or time.perf_counter() < deadline:
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


# -- produce MB/s by record size ------------------------------------------------------------------

SIZES = ((1 << 10, 1), (1 << 10, 6), (100 << 10, 1), (1 << 20, 1))  # (record bytes, partitions)
# Bytes a client holds produced and not yet acknowledged (librdkafka's queue, which keeps
# records until their delivery report; NATS's window of unacknowledged publishes): the same
# for both systems, so an ack latency is mostly that amount over the throughput (Little's law).
SIZE_UNACKED_BYTES = 8 << 20
# The topics' largest record batch: Kafka's default max.message.bytes (1 MiB + 12 bytes) is just
# short of a batch holding one 1 MiB record; quorumdb checks the same topic setting.
SIZE_TOPIC_CONFIG = {"max.message.bytes": str(8 << 20)}


def size_label(size: int) -> str:
    if size >= 1 << 20:
        return f"{size / (1 << 20):g} MiB"
    return f"{size / 1024:g} KiB" if size >= 1024 else f"{size} B"


def size_producer_conf(size: int) -> dict[str, Any]:
    """librdkafka settings for `size`-byte records (printed with the results): batches of up to
    1 MiB (one record each at 1 MiB, where lingering gains nothing); librdkafka's requests may
    reach message.max.bytes (a batch may exceed batch.size by its first record)."""
    return {
        "linger.ms": 0 if size >= 1 << 20 else 5,
        "batch.size": 1 << 20,
        "message.max.bytes": 8 << 20,
        "queue.buffering.max.kbytes": SIZE_UNACKED_BYTES >> 10,
    }


def conf_label(conf: dict[str, Any]) -> str:
    return f"linger {conf['linger.ms']}ms, batch {size_label(conf['batch.size'])}"


def size_streams(size: int, partitions: int) -> list[tuple[str, str]]:
    return [(f"S{size}_P{partitions}_{k}", f"s{size}.p{partitions}.{k}") for k in range(partitions)]


def all_size_streams() -> list[tuple[str, str]]:
    return [s for size, parts in SIZES for s in size_streams(size, parts)]


def run_sizes(args: argparse.Namespace, q: Quorum, n: Nats | None) -> list[Result]:
    results = []
    for size, parts in SIZES:
        topic = f"size-{size}-{parts}"
        create_topic(q, topic, parts, SIZE_TOPIC_CONFIG)
        conf = size_producer_conf(size)
        r = Result("quorumdb", parts, size=size, settings=conf_label(conf))
        label = f"{size_label(size)} x {parts} partition(s)"
        console.print(f"quorumdb, {label}: produce", end="")
        kafka_produce(q, topic, args.seconds, r, conf, latencies=True)
        console.print(f" {r.rate:,.0f}/s, {r.mbps:.1f} MB/s, ack p50 {_ms(r.ack, 0.5)} ms")
        results.append(r)
        if n is None:
            continue
        window = max(1, min(args.nats_window, SIZE_UNACKED_BYTES // size))
        r = Result("NATS", parts, size=size, settings=f"window {window:,} publishes")
        console.print(f"NATS,     {label}: publish", end="")
        names = size_streams(size, parts)
        asyncio.run(nats_produce(n, parts, args.seconds, window, r, names=names, latencies=True))
        console.print(f" {r.rate:,.0f}/s, {r.mbps:.1f} MB/s, ack p50 {_ms(r.ack, 0.5)} ms")
        results.append(r)
    return results


# -- follower catch-up from segments --------------------------------------------------------------

CATCH_UP_TOPIC = "catch-up"
CATCH_UP_RECORD = 1 << 20
CATCH_UP_SNAPSHOT_BYTES = 4 << 20
_CAUGHT_UP = re.compile(r"caught up from segments bytes=(\d+) seconds=([\d.]+) mb_per_s=([\d.]+)")


@dataclass
class CatchUpResult:
    leader: int = 0
    follower: int = 0
    produced: int = 0  # bytes acknowledged while the follower was down
    produce_s: float = 0.0
    produce_errors: int = 0
    fetched: int = 0  # the follower's quorumdb_kafka_catch_up_bytes_total
    up_s: float | None = None  # restart -> the follower's /metrics answers
    first_fetch_s: float | None = None  # restart -> its catch_up_bytes_total > 0
    caught_up_s: float | None = None  # restart -> the follower's metrics say caught up
    same_log_s: float | None = None  # restart -> its partition log as long as the leader's
    log_bytes: int | None = None  # from the follower's "caught up from segments" log line
    log_s: float | None = None
    log_bytes_leader: int = 0  # the leader's partition log at the end
    log_bytes_before: int = 0  # ... before the kill
    rss_mib: dict[int, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def node_metrics(url: str) -> dict[str, float]:
    """The node's quorumdb_kafka_* gauges and counters (labels dropped)."""
    with urllib.request.urlopen(url + "/metrics", timeout=2) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("quorumdb_kafka_"):
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = float(value)
    return out


def partition_log_bytes(lc: LocalCluster, node_id: int, topic: str) -> int:
    """Bytes in the segment files of a node's replica of partition 0 of `topic`."""
    total = 0
    for pdir in (lc.dir / f"n{node_id}" / "data" / "kafka").glob(f"{topic}-0-*"):
        for seg in pdir.glob("*.log"):
            with contextlib.suppress(OSError):
                total += seg.stat().st_size
    return total


def peak_rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def run_catch_up(args: argparse.Namespace, root: Path, procs: Procs) -> CatchUpResult:
    """Kill -9 a follower of an RF-3 partition, produce `--catch-up-mb` MiB, restart it, and
    time how it catches up (from a peer's segments, the leader having compacted its Raft log
    past what the follower has)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient

    env = {
        "QUORUMDB_SNAPSHOT_BYTES": str(CATCH_UP_SNAPSHOT_BYTES),
        "QUORUMDB_ELECTION_TICKS": "60",  # as in the e2e tests: no spurious elections under load
    }
    q = start_quorumdb(root, procs, "catch-up", env)
    lc = q.cluster
    res = CatchUpResult()
    create_topic(q, CATCH_UP_TOPIC, 1, SIZE_TOPIC_CONFIG)
    admin = AdminClient({"bootstrap.servers": q.bootstrap})
    part = admin.list_topics(CATCH_UP_TOPIC, timeout=10).topics[CATCH_UP_TOPIC].partitions[0]
    res.leader = part.leader
    res.follower = next(i for i in part.replicas if i != part.leader)
    del admin  # closes its connections: it would log the killed node's refusals

    errors: list[Any] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            res.produced += CATCH_UP_RECORD
        else:
            errors.append(err)

    quiet = logging.getLogger("kafka-bench.librdkafka")  # its connection to the killed node
    quiet.propagate = False  # logs a disconnect, then refusals; errors come in delivery reports
    quiet.addHandler(logging.NullHandler())
    conf = {
        **producer_conf(q),
        **size_producer_conf(CATCH_UP_RECORD),
        "bootstrap.servers": kafka_bootstrap(lc, without=res.follower),
        "logger": quiet,
    }
    p = Producer(conf)
    value = os.urandom(CATCH_UP_RECORD)
    # One record before the kill: the producer has its connections and producer id (a
    # coordinator led by the killed node would otherwise delay the first acks by an election).
    produce_waiting(p, CATCH_UP_TOPIC, value, None, partition=0)
    if p.flush(60):
        raise RuntimeError("the warm-up record was not acknowledged")
    res.log_bytes_before = partition_log_bytes(lc, res.leader, CATCH_UP_TOPIC)
    console.print(
        f"catch-up: leader node {res.leader}; kill -9 node {res.follower}; produce", end=""
    )
    dead = lc.pids[res.follower]
    os.killpg(dead, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(dead) and time.monotonic() < deadline:
        time.sleep(0.02)
    t0 = time.perf_counter()
    for _ in range(args.catch_up_mb * (1 << 20) // CATCH_UP_RECORD):
        produce_waiting(p, CATCH_UP_TOPIC, value, on_delivery, partition=0)
        p.poll(0)
    left = p.flush(600)
    res.produce_s = time.perf_counter() - t0
    res.produce_errors = len(errors) + left
    if errors:
        res.notes.append(f"produce errors while the follower was down: {errors[:3]}")
    console.print(
        f" {res.produced / (1 << 20):,.0f} MiB in {res.produce_s:.1f} s; restart node "
        f"{res.follower}",
        end="",
    )

    log = lc.dir / f"n{res.follower}" / "node.log"
    log_from = log.stat().st_size if log.exists() else 0
    with node_environment(env):
        pid = start_node(lc.dir, res.follower)
    procs.pids.append(pid)
    restarted = time.monotonic()
    url = lc.nodes[res.follower].http_url
    deadline = restarted + args.catch_up_timeout
    metrics: dict[str, float] = {}
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise RuntimeError(f"node {res.follower} exited after its restart: see {log}")
        with contextlib.suppress(OSError, ValueError):
            metrics = node_metrics(url)
        now = time.monotonic() - restarted
        behind = metrics.get("quorumdb_kafka_partitions_catching_up", 1.0)
        fetched = metrics.get("quorumdb_kafka_catch_up_bytes_total", 0.0)
        if res.up_s is None and metrics:
            res.up_s = now
        if res.first_fetch_s is None and fetched > 0:
            res.first_fetch_s = now
        if res.caught_up_s is None and behind == 0 and fetched > 0:
            res.caught_up_s, res.fetched = now, int(fetched)
        if res.same_log_s is None:
            lead = partition_log_bytes(lc, res.leader, CATCH_UP_TOPIC)
            if 0 < lead == partition_log_bytes(lc, res.follower, CATCH_UP_TOPIC):
                res.same_log_s, res.log_bytes_leader = now, lead
        if res.log_s is None:
            with log.open("rb") as f:
                f.seek(log_from)
                m = _CAUGHT_UP.search(f.read().decode(errors="replace"))
            if m:
                res.log_bytes, res.log_s = int(m[1]), float(m[2])
        if res.caught_up_s is not None and res.same_log_s is not None and res.log_s is not None:
            break
        if res.same_log_s is not None and behind == 0 and fetched == 0 and now > 10:
            res.notes.append(
                "the follower caught up without fetching from segments (through the Raft log:"
                " the leader had not compacted past it)"
            )
            break
        time.sleep(0.1)
    else:
        res.notes.append(
            f"gave up after {args.catch_up_timeout:g} s: follower metrics {metrics}, partition"
            f" log {partition_log_bytes(lc, res.follower, CATCH_UP_TOPIC):,} bytes vs the"
            f" leader's {partition_log_bytes(lc, res.leader, CATCH_UP_TOPIC):,}"
        )
    res.fetched = int(metrics.get("quorumdb_kafka_catch_up_bytes_total", res.fetched))
    console.print(
        f"; caught up in {res.caught_up_s:.1f} s"
        if res.caught_up_s is not None
        else "; not caught up"
    )
    res.rss_mib = {i: peak_rss_mib(pid if i == res.follower else lc.pids[i]) for i in lc.nodes}
    return res


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


def print_sizes_report(results: list[Result], seconds: float, no_nats: str) -> None:
    nats = {(r.size, r.partitions): r for r in results if r.system == "NATS"}
    caption = (
        "MB/s: acknowledged record values, 10^6 bytes. ack latency: produce()/publish to its "
        f"acknowledgement, time queued in the client included; each client holds at most "
        f"{size_label(SIZE_UNACKED_BYTES)} unacknowledged (librdkafka queue.buffering.max.kbytes,"
        " NATS's window), so a saturated run's latency is about that over its MB/s. quorumdb: "
        "confluent-kafka, acks=all, idempotent, message.max.bytes 8 MiB, topics with "
        "max.message.bytes 8 MiB; NATS: one R3 file stream per partition, nats-py, "
        "max_payload 8 MB."
    )
    if no_nats:
        caption += f" NATS not run: {no_nats}."
    t = Table(
        title=f"Produce by record size: acks=all, RF 3 / R3, 3 servers each on loopback, "
        f"{seconds:g} s runs",
        caption=caption,
        caption_justify="left",
    )
    columns = (
        "system", "record", "part.", "client settings", "records/s", "MB/s", "vs NATS",
        "ack p50 ms", "ack p99 ms", "server CPU ms/MB", "client cores",
    )  # fmt: skip
    for col in columns:
        left = col in ("system", "client settings")
        t.add_column(col, justify="left" if left else "right", no_wrap=col == "client settings")
    for r in results:
        base = nats.get((r.size, r.partitions))
        vs = f"{r.rate / base.rate:.2f}x" if r.system != "NATS" and base and base.rate else ""
        mb = r.produced * r.size / 1e6
        t.add_row(
            r.system,
            size_label(r.size),
            str(r.partitions),
            r.settings,
            f"{r.rate:,.0f}" + (f" ({r.produce_errors} errors)" if r.produce_errors else ""),
            f"{r.mbps:.1f}",
            vs,
            _ms(r.ack, 0.5),
            _ms(r.ack, 0.99),
            f"{r.server_cpu_s / mb * 1e3:.1f}" if mb else "-",
            f"{r.client_cpu_s / r.produce_s:.2f}" if r.produce_s else "-",
        )
    console.print(t)


def print_catch_up_report(c: CatchUpResult) -> None:
    mib = 1 << 20
    t = Table(
        title=f"Follower catch-up from segments: 3 nodes, RF 3, 1 partition, "
        f"{size_label(CATCH_UP_RECORD)} records, "
        f"snapshot_bytes {size_label(CATCH_UP_SNAPSHOT_BYTES)}",
        caption="MiB = 2^20 bytes, MB/s = 10^6 bytes/s. 'fetched': the restarted follower's "
        "quorumdb_kafka_catch_up_bytes_total. 'caught up': its quorumdb_kafka_partitions_"
        "catching_up is 0 with bytes fetched. 'fetch time': its node.log line 'caught up from "
        "segments' (first fetch request to the last chunk written); the time from restart "
        "includes the process's start (imports, WAL replay, snapshot install). Peak RSS: "
        "VmHWM; the follower's is its restarted process's.",
        caption_justify="left",
    )
    t.add_column("what")
    t.add_column("value", justify="right")
    rate = c.produced / c.produce_s / 1e6 if c.produce_s else 0.0
    t.add_row(
        f"produced while node {c.follower} was down (acks=all)",
        f"{c.produced / mib:,.0f} MiB in {c.produce_s:.1f} s = {rate:.1f} MB/s"
        + (f" ({c.produce_errors} errors)" if c.produce_errors else ""),
    )
    t.add_row("fetched from segments", f"{c.fetched / mib:,.1f} MiB")
    if c.same_log_s is not None:
        t.add_row(
            "the rest: the Raft log after the snapshot",
            f"{(c.log_bytes_leader - c.log_bytes_before - c.fetched) / mib:,.1f} MiB",
        )
    for what, s in (
        ("restart -> /metrics answers", c.up_s),
        ("... -> bytes fetched", c.first_fetch_s),
        ("... -> caught up (metrics)", c.caught_up_s),
        ("... -> partition log as long as the leader's", c.same_log_s),
    ):
        t.add_row(what, f"{s:.1f} s" if s is not None else "never")
    if c.caught_up_s:
        t.add_row(
            "catch-up MB/s: fetched / time from restart", f"{c.fetched / c.caught_up_s / 1e6:.1f}"
        )
    if c.log_s is not None and c.log_bytes is not None:
        t.add_row("fetch time (node log)", f"{c.log_s:.2f} s for {c.log_bytes / mib:,.1f} MiB")
        if c.log_s:
            t.add_row(
                "catch-up MB/s: fetched / fetch time (node log)",
                f"{c.log_bytes / c.log_s / 1e6:.1f}",
            )
    else:
        t.add_row("fetch time (node log)", "no 'caught up from segments' line")
    for i, rss in sorted(c.rss_mib.items()):
        role = (
            "leader" if i == c.leader else "restarted follower" if i == c.follower else "follower"
        )
        t.add_row(f"peak RSS, node {i} ({role})", f"{rss:,.0f} MiB")
    console.print(t)
    for note in c.notes:
        console.print(f"- catch-up: {note}", highlight=False)


def print_profiles(d: Path, top: int = 15) -> None:
    for f in sorted(d.glob("node-*.prof")):
        out = io.StringIO()
        pstats.Stats(str(f), stream=out).sort_stats("tottime").print_stats(top)
        console.rule(f"cProfile {f.name} (event loop thread, by own time)")
        lines = out.getvalue().splitlines()
        start = next((i for i, ln in enumerate(lines) if "ncalls" in ln), 0)
        console.print("\n".join(lines[start:]), highlight=False, soft_wrap=True)


# -- main -----------------------------------------------------------------------------------------


SECTIONS = ("records", "sizes", "catch-up")


@dataclass
class Report:
    records: list[Result] = field(default_factory=list)
    sizes: list[Result] = field(default_factory=list)
    catch_up: CatchUpResult | None = None


def run_records(args: argparse.Namespace, q: Quorum, n: Nats | None) -> list[Result]:
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


def run(args: argparse.Namespace, root: Path, procs: Procs, report: Report) -> None:
    sections = args.only
    if "records" in sections or "sizes" in sections:
        env = {"QUORUMDB_PROFILE_DIR": str(Path(args.profile).resolve())} if args.profile else {}
        q = start_quorumdb(root, procs, env=env)
        n = None
        if not args.no_nats:
            n = start_nats(root, procs)
            names = [s for p in PARTITIONS for s in streams(p)] if "records" in sections else []
            asyncio.run(nats_setup(n, names + (all_size_streams() if "sizes" in sections else [])))
        if "records" in sections:
            report.records = run_records(args, q, n)
        if "sizes" in sections:
            report.sizes = run_sizes(args, q, n)
        procs.stop_all()  # the catch-up cluster runs alone
    if "catch-up" in sections:
        report.catch_up = run_catch_up(args, root, procs)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="shorter runs (~1.5 minutes)")
    ap.add_argument(
        "--only",
        action="append",
        choices=SECTIONS,
        help="run only this section (repeatable; default: all of them)",
    )
    ap.add_argument("--seconds", type=float, help="produce time per run (default 8; quick 3)")
    ap.add_argument("--lat-rate", type=float, default=500, help="records/s of the latency run")
    ap.add_argument("--lat-seconds", type=float, help="latency run length (default 5; quick 2)")
    ap.add_argument("--nats-window", type=int, default=4096, help="NATS acks outstanding")
    ap.add_argument("--no-nats", action="store_true", help="quorumdb only")
    ap.add_argument(
        "--catch-up-mb", type=int, help="MiB produced while the follower is down (512; quick 128)"
    )
    ap.add_argument(
        "--catch-up-timeout", type=float, default=600, help="seconds allowed for the catch-up"
    )
    ap.add_argument("--profile", metavar="DIR", help="cProfile the quorumdb nodes into DIR")
    ap.add_argument("--keep", action="store_true", help="keep the data directories and logs")
    args = ap.parse_args()
    args.only = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    args.seconds = args.seconds or (3.0 if args.quick else 8.0)
    args.lat_seconds = args.lat_seconds or (2.0 if args.quick else 5.0)
    args.catch_up_mb = args.catch_up_mb or (128 if args.quick else 512)
    notes = []
    no_nats = "--no-nats" if args.no_nats else ""
    if not args.no_nats:
        try:
            import nats  # noqa: F401
        except ImportError:
            no_nats = "nats-py is not installed in this environment"
        if not Path(NATS_SERVER).exists():
            no_nats = _install_nats_server()
        if no_nats:
            args.no_nats = True
            if "records" in args.only or "sizes" in args.only:
                notes.append(f"NATS skipped: {no_nats}")

    def on_term(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    root = Path(tempfile.mkdtemp(prefix="kafka-bench-"))
    procs = Procs()
    load0 = os.getloadavg()[0]
    started = time.monotonic()
    report = Report()
    try:
        run(args, root, procs, report)
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
    if report.records or report.sizes:
        notes += [
            "durability: quorumdb acknowledges acks=all after the Raft commit, each node having "
            "fdatasynced the entry (group commit); JetStream acknowledges after its Raft quorum "
            "has the message, without an fsync per message (default sync_interval 2 min)",
            "clients: confluent-kafka is librdkafka (C, own I/O threads); nats-py is pure-Python "
            "asyncio with pipelined publishes (the fastest nats-py mode found)",
        ]
    notes += [
        f"machine: {os.cpu_count()} CPUs, 1-minute load average {load0:.1f} at the start and "
        f"{load1:.1f} at the end (other work on the machine slows both systems alike; compare "
        "ratios from one run)",
        f"sections: {', '.join(args.only)}; total {time.monotonic() - started:.0f} s",
    ]
    if report.records:
        print_report(report.records, args.seconds, notes)
    if report.sizes:
        print_sizes_report(report.sizes, args.seconds, no_nats)
    if report.catch_up is not None:
        print_catch_up_report(report.catch_up)
    for note in notes:
        console.print(f"- {note}", highlight=False)
    if args.profile:
        print_profiles(Path(args.profile))
    return 0


if __name__ == "__main__":
    sys.exit(main())
