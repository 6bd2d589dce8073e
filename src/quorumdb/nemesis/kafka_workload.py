"""The kafka workload: stock aiokafka producers and consumers against the cluster's listeners.

Theory of operation (the real-process twin of `sim.kafka_workload`, through the clients
users run instead of the backend's sans-IO calls):

- at start, one topic (`partitions` partitions, replication factor 3, or the node count if
  smaller) is created through the admin client, retried until it exists;
- each producer client is a Jepsen process sending one record at a time, at a bounded rate,
  through its own `AIOKafkaProducer` (acks=all, idempotent: a retried batch must not land
  twice) to a partition it names; a value is ``"<client>-<n>"``, unique over the run. The
  send is ``ok`` with the acknowledged offset, ``fail`` when it certainly did not land (the
  client refused it before sending, or the broker answered an error that is never written),
  or ``info`` (no answer in `SEND_TIMEOUT_S`, or an error after which it may have landed).
  After an ``info`` or a ``fail`` the client is a new process with a new producer (a new
  producer id: the old one's sequences are in an unknown state), the old one closed in the
  background;
- consumers (half as many as producers, at least two) are assigned every partition (no
  group: positions are only the client's), start at offset 0 and poll until the deadline;
  each poll is recorded with the records it returned. Out-of-range fetches are not reset
  silently (``auto_offset_reset="none"``): a poll that gets one fails, and after
  `_OUT_OF_RANGE_MAX` in a row the consumer seeks to the beginning, recorded as a ``seek``,
  so the history shows every move of its positions;
- after the heal, a fresh consumer reads every partition from offset 0 to its end (at least
  one past the highest acknowledged offset, waiting for the leader's high watermark to
  catch up within `_FINAL_BUDGET_S`).

The history is `check.kafka_history`'s format, judged by `check.kafka_delivery.check_delivery`.
When the final read reached the end of every partition, its two kinds of information are
failures too, as in the simulator: an acknowledged record nobody read lies beyond the log's
end (``unread``: lost), and a value no producer sent (``unsent-read``) is garbage, since
every producer's sends are in the history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterator
from typing import Any

# aiokafka is a runtime dependency of quorumdb (`nemesis.workloads` imports this module at its
# top); it ships no type hints.
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # type: ignore[import-untyped]
from aiokafka.errors import (  # type: ignore[import-untyped]
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
)

from quorumdb.check.kafka_delivery import AnomalyKind, DeliveryResult, Finding, check_delivery
from quorumdb.check.kafka_history import kafka_history_from_events
from quorumdb.check.kafka_report import delivery_summary_line, delivery_to_json
from quorumdb.nemesis.workload import History, Verdict

__all__ = ["SEND_TIMEOUT_S", "TOPIC", "KafkaWorkload"]

TOPIC = "nemesis"
SEND_TIMEOUT_S = 4.0  # a send not acknowledged by then is given up (info)
# aiokafka's per-request timeout (its produce delivery timeout too). Shorter than most pauses:
# a producer retries a request a paused leader holds, so retried batches reach the log.
_REQUEST_TIMEOUT_MS = 1_000
_POLL_TIMEOUT_MS = 300
_POLL_TIMEOUT_S = 5.0  # a poll that takes longer is cut short (info: it may have consumed)
_POLL_RECORDS_MAX = 500
_OUT_OF_RANGE_MAX = 20  # consecutive out-of-range polls before the consumer seeks to 0
_CONSUMERS_MIN = 2  # consumers: half the producers, at least this many
_REPLICATION_MAX = 3
_START_TIMEOUT_S = 5.0  # a client's start (metadata, producer id) given up after this
_CLOSE_TIMEOUT_S = 5.0
_FINAL_BUDGET_S = 30.0
_ANOMALIES_MAX = 100  # findings listed in the verdict (the summary counts them all)
_SIGHTINGS_NAMED = 4
# The broker rejects these before writing anything: a send that got one did not land.
_DEFINITE: tuple[type[KafkaError], ...] = (
    InvalidTopicError,
    MessageSizeTooLargeError,
    TopicAuthorizationFailedError,
)
_BACKOFF_S = (0.05, 0.2)


class KafkaWorkload:
    name = "kafka"

    def __init__(
        self, servers: list[str], *, clients: int, partitions: int, rate: float, seed: int
    ) -> None:
        """`servers`: the nodes' Kafka listeners (host:port); `clients`: producers; `rate`:
        sends per second over all producers."""
        self.servers = ",".join(servers)
        self.nodes = len(servers)
        self.clients = clients
        self.consumers = max(_CONSUMERS_MIN, clients // 2)
        self.partitions = max(1, partitions)
        self.interval_s = clients / rate
        self.seed = seed
        self.history = History()
        self._topic_created = False
        self._closing: list[asyncio.Task[None]] = []
        self._acked: dict[int, int] = {}  # partition -> highest acknowledged offset
        self._reached_end = False
        self._final_note = ""
        self._rng = random.Random(f"kafka-{seed}")  # back-offs

    def _tp(self, partition: int, **extra: Any) -> dict[str, Any]:
        return {"topic": TOPIC, "partition": partition, **extra}

    # -- the run -------------------------------------------------------------------------------

    async def run(self, stop_at: float) -> None:
        with _quiet_clients():
            await self._run(stop_at)

    async def _run(self, stop_at: float) -> None:
        await self._create_topic(stop_at)
        if not self._topic_created:
            return
        try:
            await asyncio.gather(
                *(self._producer(n, stop_at) for n in range(self.clients)),
                *(self._consumer(stop_at) for _ in range(self.consumers)),
            )
        finally:
            await asyncio.gather(*self._closing)

    async def _create_topic(self, stop_at: float) -> None:
        """Create the topic, retried until it exists (an earlier attempt may have made it)."""
        topic = NewTopic(TOPIC, self.partitions, min(_REPLICATION_MAX, self.nodes))
        while not self._topic_created and time.monotonic() < stop_at:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.servers, request_timeout_ms=_REQUEST_TIMEOUT_MS
            )
            try:
                await asyncio.wait_for(admin.start(), _START_TIMEOUT_S)
                answer = await asyncio.wait_for(admin.create_topics([topic]), _START_TIMEOUT_S)
                codes = [e[1] for e in answer.topic_errors]
                self._topic_created = all(c in (0, TopicAlreadyExistsError.errno) for c in codes)
            except TopicAlreadyExistsError:
                self._topic_created = True
            except (KafkaError, OSError, TimeoutError):
                pass
            finally:
                await self._close(admin.close())
            if not self._topic_created:
                await asyncio.sleep(self._rng.uniform(*_BACKOFF_S))

    async def _close(self, closing: Any) -> None:
        """Close a client within a bound. aiokafka's close awaits fetch tasks it has just
        cancelled itself, and that CancelledError reaches us: it is not our task being
        cancelled (Ctrl-C), which still propagates."""
        try:
            await asyncio.wait_for(closing, _CLOSE_TIMEOUT_S)
        except (KafkaError, OSError, TimeoutError):
            pass
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise

    # -- producers -----------------------------------------------------------------------------

    async def _new_producer(self, stop_at: float) -> AIOKafkaProducer | None:
        while time.monotonic() < stop_at:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.servers,
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
                retry_backoff_ms=50,
                linger_ms=0,
            )
            try:
                await asyncio.wait_for(producer.start(), _START_TIMEOUT_S)
                return producer
            except (KafkaError, OSError, TimeoutError):
                await self._close(producer.stop())
                await asyncio.sleep(self._rng.uniform(*_BACKOFF_S))
        return None

    def _retire(self, producer: AIOKafkaProducer) -> None:
        """Close a producer whose state is unknown, without waiting for it."""
        self._closing.append(asyncio.create_task(self._close(producer.stop())))

    async def _producer(self, n: int, stop_at: float) -> None:
        rng = random.Random(f"kafka-{self.seed}-{n}")
        process = self.history.new_process()
        producer = await self._new_producer(stop_at)
        sent = 0
        while producer is not None and time.monotonic() < stop_at:
            started = time.monotonic()
            sent += 1
            partition = rng.randrange(self.partitions)
            outcome = await self._send(producer, process, partition, f"{n}-{sent}")
            if outcome != "ok":
                process = self.history.new_process()
                self._retire(producer)
                producer = await self._new_producer(stop_at)
            await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
        if producer is not None:
            await self._close(producer.stop())

    async def _send(
        self, producer: AIOKafkaProducer, process: int, partition: int, value: str
    ) -> str:
        """One send, recorded; its completion type."""
        self.history.add(process, "invoke", "send", value=self._tp(partition, value=value))
        deadline = time.monotonic() + SEND_TIMEOUT_S
        try:
            queued = await asyncio.wait_for(
                producer.send(TOPIC, value=value.encode(), partition=partition), SEND_TIMEOUT_S
            )
        except KafkaError as exc:  # refused before anything was sent (no metadata, ...)
            self.history.add(process, "fail", "send", value=None, error=repr(exc))
            return "fail"
        except TimeoutError:  # cut short while queueing: it may have been queued
            self.history.add(process, "info", "send", value=None, error="timeout")
            return "info"
        try:
            meta = await asyncio.wait_for(
                asyncio.shield(queued), max(0.0, deadline - time.monotonic())
            )
        except TimeoutError:
            self.history.add(process, "info", "send", value=None, error="timeout")
            return "info"
        except KafkaError as exc:
            kind = "fail" if isinstance(exc, _DEFINITE) else "info"
            self.history.add(process, kind, "send", value=None, error=repr(exc))
            return kind
        offset = int(meta.offset)
        self._acked[partition] = max(self._acked.get(partition, -1), offset)
        self.history.add(
            process, "ok", "send", value=self._tp(partition, value=value, offset=offset)
        )
        return "ok"

    # -- consumers -----------------------------------------------------------------------------

    async def _new_consumer(self, deadline: float) -> AIOKafkaConsumer | None:
        while time.monotonic() < deadline:
            consumer = AIOKafkaConsumer(
                bootstrap_servers=self.servers,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="none",
                request_timeout_ms=_REQUEST_TIMEOUT_MS,
                fetch_max_wait_ms=100,
                retry_backoff_ms=50,
            )
            try:
                await asyncio.wait_for(consumer.start(), _START_TIMEOUT_S)
                return consumer
            except (KafkaError, OSError, TimeoutError):
                await self._close(consumer.stop())
                await asyncio.sleep(self._rng.uniform(*_BACKOFF_S))
        return None

    async def _assign(self, consumer: AIOKafkaConsumer, process: int) -> list[TopicPartition]:
        """Assign every partition from offset 0, recorded as an assign."""
        tps = [TopicPartition(TOPIC, p) for p in range(self.partitions)]
        value = [self._tp(p, offset=0) for p in range(self.partitions)]
        self.history.add(process, "invoke", "assign", value=value)
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        self.history.add(process, "ok", "assign", value=value)
        return tps

    async def _poll(self, consumer: AIOKafkaConsumer, process: int) -> list[dict[str, Any]] | str:
        """One poll, recorded: its records, or "out-of-range", "fail" or "info"."""
        self.history.add(process, "invoke", "poll", value=None)
        try:
            got = await asyncio.wait_for(
                consumer.getmany(timeout_ms=_POLL_TIMEOUT_MS, max_records=_POLL_RECORDS_MAX),
                _POLL_TIMEOUT_S,
            )
        except OffsetOutOfRangeError:
            self.history.add(process, "fail", "poll", value=None, error="offset out of range")
            return "out-of-range"
        except KafkaError as exc:  # raised before any record was handed out
            self.history.add(process, "fail", "poll", value=None, error=repr(exc))
            return "fail"
        except TimeoutError:
            self.history.add(process, "info", "poll", value=None, error="timeout")
            return "info"
        records = [
            self._tp(tp.partition, offset=r.offset,
                     value="" if r.value is None else r.value.decode("utf-8", "replace"))
            for tp, rs in sorted(got.items(), key=lambda item: item[0].partition)
            for r in rs
        ]  # fmt: skip
        self.history.add(process, "ok", "poll", value=records)
        return records

    async def _consumer(self, stop_at: float) -> None:
        process = self.history.new_process()
        consumer = await self._new_consumer(stop_at)
        if consumer is None:
            return
        try:
            await self._assign(consumer, process)
            out_of_range = 0
            while time.monotonic() < stop_at:
                got = await self._poll(consumer, process)
                if got == "info":  # its positions are unknown to the checker from here
                    process = self.history.new_process()
                out_of_range = out_of_range + 1 if got == "out-of-range" else 0
                if out_of_range >= _OUT_OF_RANGE_MAX:
                    out_of_range = 0
                    await self._seek_to_start(consumer, process)
        finally:
            await self._close(consumer.stop())

    async def _seek_to_start(self, consumer: AIOKafkaConsumer, process: int) -> None:
        value = [self._tp(p, offset=0) for p in range(self.partitions)]
        self.history.add(process, "invoke", "seek", value=value)
        for p in range(self.partitions):
            consumer.seek(TopicPartition(TOPIC, p), 0)
        self.history.add(process, "ok", "seek", value=value)

    # -- the end -------------------------------------------------------------------------------

    async def final_reads(self) -> None:
        """After the heal: a fresh consumer reads every partition from 0 to its end."""
        with _quiet_clients():
            await self._final_read(time.monotonic() + _FINAL_BUDGET_S)

    async def _final_read(self, deadline: float) -> None:
        if not self._topic_created:
            await self._create_topic(deadline)
            if not self._topic_created:
                self._final_note = "the topic was never created"
                return
        consumer = await self._new_consumer(deadline)
        if consumer is None:
            self._final_note = "no consumer could start"
            return
        try:
            await self._read_to_end(consumer, deadline)
        finally:
            await self._close(consumer.stop())

    async def _read_to_end(self, consumer: AIOKafkaConsumer, deadline: float) -> None:
        """Poll until every partition is read to its end. The end comes from the latest
        `end_offsets` call that succeeded; it is trusted as the log's end when it is above
        every acknowledged offset of its partition, or when the latest call succeeded (then
        an end below an acknowledged offset means the record there is gone). Otherwise the
        read is unfinished: an old end, read to, would make every record acknowledged above
        it a false loss."""
        process = self.history.new_process()
        tps = await self._assign(consumer, process)
        read_to = dict.fromkeys(range(self.partitions), 0)  # one past the last offset read
        ends: dict[int, int] = {}
        fresh = False  # the latest end_offsets call succeeded
        last_error = ""
        while time.monotonic() < deadline:
            try:
                answer = await asyncio.wait_for(consumer.end_offsets(tps), _START_TIMEOUT_S)
                ends = {tp.partition: int(o) for tp, o in answer.items()}
                fresh = True
            except (KafkaError, TimeoutError) as exc:
                fresh = False
                last_error = f"; last end-offsets error {exc!r}"
            if self._read_all(read_to, ends) and self._above_acked(ends):
                self._reached_end = True
                return
            got = await self._poll(consumer, process)
            if got == "info":
                process = self.history.new_process()
            elif isinstance(got, list):
                for r in got:
                    read_to[r["partition"]] = max(read_to[r["partition"]], r["offset"] + 1)
            else:
                await asyncio.sleep(0.05)
        if fresh and self._read_all(read_to, ends):
            # Read to the log's current end, which stays below an acknowledged offset: the
            # record there is gone (the checker's `unread` findings are losses).
            self._reached_end = True
            return
        stale = "" if fresh else " from an earlier end-offsets call"
        self._final_note = (
            f"the final read did not reach the end of every partition in {_FINAL_BUDGET_S:g} s "
            f"(read up to {read_to}, ends {ends}{stale}{last_error})"
        )

    def _read_all(self, read_to: dict[int, int], ends: dict[int, int]) -> bool:
        """Every partition has an end and was read up to it."""
        return len(ends) == self.partitions and all(read_to[p] >= e for p, e in ends.items())

    def _above_acked(self, ends: dict[int, int]) -> bool:
        """Every acknowledged offset is below its partition's end."""
        return all(ends.get(p, 0) > o for p, o in self._acked.items())

    # -- the verdict ---------------------------------------------------------------------------

    def check(self) -> Verdict:
        """`check_delivery` over the history; each finding names its sends' and polls' events."""
        result = check_delivery(kafka_history_from_events(self.history.events))
        strict = (AnomalyKind.UNREAD, AnomalyKind.UNSENT_READ) if self._reached_end else ()
        failures = [f for f in result.findings if f.kind.is_failure or f.kind in strict]
        anomalies = [self._anomaly(f) for f in failures[:_ANOMALIES_MAX]]
        summary = _summary(result, failures)
        if self._final_note:
            anomalies.append({"kind": "liveness", "message": self._final_note, "ops": []})
            summary += f"; liveness: {self._final_note}"
        details = delivery_to_json(result)
        details.pop("partitions")
        details["read_to_end"] = self._reached_end
        details["anomalies_total"] = len(failures)
        # Acknowledged records gone: the checker's `lost`, and its `unread` once the final
        # read reached the end of the log (see the module docstring).
        lost = (AnomalyKind.LOST, AnomalyKind.UNREAD) if self._reached_end else (AnomalyKind.LOST,)
        details["lost_acked"] = sum(1 for f in result.findings if f.kind in lost)
        return Verdict(
            valid=not anomalies, checker="kafka-delivery", summary=summary,
            anomalies=anomalies, details=details,
        )  # fmt: skip

    def _anomaly(self, f: Finding) -> dict[str, Any]:
        seen = "; ".join(
            f"{s.source.value} by process {s.process} of {s.value!r} at offset {s.offset} "
            f"(#{s.event_index + 1})"
            for s in f.sightings[:_SIGHTINGS_NAMED]
        )
        more = f"; and {len(f.sightings) - _SIGHTINGS_NAMED} more" if len(f.sightings) > 4 else ""
        what = "" if f.value is None else f" value {f.value!r}"
        message = f"{f.kind.value} on {f.topic_partition}{what} at offsets {list(f.offsets)}"
        return {
            "kind": f.kind.value,
            "message": f"{message}: {seen}{more}",
            "topic": f.topic_partition.topic,
            "partition": f.topic_partition.partition,
            "value": f.value,
            "offsets": list(f.offsets),
            "ops": [self.history.events[i] for i in f.event_indexes],
        }


@contextlib.contextmanager
def _quiet_clients() -> Iterator[None]:
    """aiokafka logs each refused connection and retried request (WARNING and ERROR): under
    faults they are expected by the thousand, and the history records what they meant."""
    log = logging.getLogger("aiokafka")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _summary(result: DeliveryResult, failures: list[Finding]) -> str:
    line = delivery_summary_line(result)
    strict = [f for f in failures if not f.kind.is_failure]
    if strict:
        line += (
            f" ({len(strict)} unread or unsent counted as failures: the log was read to its end)"
        )
    return line
