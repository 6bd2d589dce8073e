"""Recording what real Kafka clients saw, as a history for `quorumdb.check.kafka_delivery`.

The format is `quorumdb.check.kafka_history`'s. Producers and consumers call the recorder
from their own threads (or an event loop); it keeps events in real-time order under a lock.
A send is invoked just before the client's send call, to an explicit partition (the format
names the partition on the invoke), and completed from the client's delivery callback with
the acknowledged offset, or an error. A poll is one invoke/ok pair per batch the consumer got
back, marked ``rebalance`` when the group changed the consumer's assignment during it.
Records carry their value; keys and the producer's name ride along as ignored fields.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Polled:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", "backslashreplace")


class KafkaHistory:
    """Thread-safe recorder of sends (with acknowledged offsets) and polls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[dict[str, Any]] = []
        self._process_ids = itertools.count(1)
        self._open: dict[int, dict[str, Any]] = {}  # send op -> its invoke event
        self.acked_count = 0

    def _append(self, event: dict[str, Any]) -> None:
        event["time"] = time.monotonic_ns()
        self._events.append(event)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._events]

    # -- sends -------------------------------------------------------------------------------

    def send_invoke(
        self, producer: str, topic: str, partition: int, key: bytes | None, value: bytes
    ) -> int:
        """Record a send about to be handed to the client; returns the operation's handle.

        Each send gets a process id of its own: a Kafka producer keeps many sends in flight,
        and a history process has at most one operation outstanding.
        """
        with self._lock:
            process = next(self._process_ids)
            event = {
                "process": process,
                "type": "invoke",
                "f": "send",
                "producer": producer,
                "value": {
                    "topic": topic,
                    "partition": partition,
                    "key": _text(key),
                    "value": _text(value),
                },
            }
            self._open[process] = event
            self._append(event)
            return process

    def send_ok(self, op: int, partition: int, offset: int) -> None:
        """Complete a send with what the broker acknowledged (the partition is checked)."""
        with self._lock:
            invoke = self._open.pop(op)
            assert partition == invoke["value"]["partition"], (partition, invoke)
            value = {**invoke["value"], "offset": offset}
            self.acked_count += 1
            self._append(
                {
                    "process": op,
                    "type": "ok",
                    "f": "send",
                    "producer": invoke["producer"],
                    "value": value,
                }
            )

    def send_failed(self, op: int, error: str, *, definite: bool = False) -> None:
        """A send that errored: `definite` only if it certainly was not written."""
        with self._lock:
            invoke = self._open.pop(op)
            self._append(
                {
                    "process": op,
                    "type": "fail" if definite else "info",
                    "f": "send",
                    "producer": invoke["producer"],
                    "value": invoke["value"],
                    "error": error,
                }
            )

    # -- polls -------------------------------------------------------------------------------

    def new_consumer(self) -> int:
        with self._lock:
            return next(self._process_ids)

    def assign(self, consumer: int, topic: str, partitions: Iterable[int]) -> None:
        """Record that the consumer was assigned `partitions` (positions start over)."""
        value = [{"topic": topic, "partition": p} for p in partitions]
        with self._lock:
            self._append({"process": consumer, "type": "invoke", "f": "assign", "value": value})
            self._append({"process": consumer, "type": "ok", "f": "assign", "value": value})

    def poll(self, consumer: int, records: Iterable[Polled], *, rebalance: bool = False) -> None:
        """Record one poll that returned `records` (in the order the client returned them).

        Empty polls are left out unless the assignment changed during them.
        """
        rows = [
            {
                "topic": r.topic,
                "partition": r.partition,
                "offset": r.offset,
                "key": _text(r.key),
                "value": _text(r.value),
            }
            for r in records
        ]
        if not rows and not rebalance:
            return
        done: dict[str, Any] = {"process": consumer, "type": "ok", "f": "poll", "value": rows}
        if rebalance:
            done["rebalance"] = True
        with self._lock:
            self._append({"process": consumer, "type": "invoke", "f": "poll", "value": None})
            self._append(done)

    # -- views -------------------------------------------------------------------------------

    def dump(self, path: Path) -> None:
        with path.open("w") as f:
            for e in self.events:
                f.write(json.dumps(e) + "\n")

    def acked(self) -> dict[str, tuple[int, int]]:
        """Value of every acknowledged send -> (partition, offset)."""
        return {
            e["value"]["value"]: (e["value"]["partition"], e["value"]["offset"])
            for e in self.events
            if e["f"] == "send" and e["type"] == "ok"
        }

    def unacked(self) -> list[dict[str, Any]]:
        """Sends that did not complete with ok (still open, failed or indeterminate)."""
        with self._lock:
            done = {e["process"] for e in self._events if e["f"] == "send" and e["type"] == "ok"}
            return [
                e
                for e in self._events
                if e["f"] == "send" and e["type"] == "invoke" and e["process"] not in done
            ]

    def polled(self) -> dict[int, list[tuple[int, str | None]]]:
        """Partition -> every (offset, value) polled, in poll order, over all consumers."""
        out: dict[int, list[tuple[int, str | None]]] = defaultdict(list)
        for e in self.events:
            if e["f"] == "poll" and e["type"] == "ok":
                for r in e["value"]:
                    out[r["partition"]].append((r["offset"], r["value"]))
        return dict(out)
