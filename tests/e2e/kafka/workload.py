"""Shared pieces of the client workloads: record naming, consumption goals, deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import aiokafka.abc

import kafka

RECORDS = 10_000
PARTITIONS = 3
REPLICATION_FACTOR = 3
DEADLINE_S = 60.0  # bound on any one produce or consume phase


def partition_of(i: int) -> int:
    """Sends name their partition (the history format wants it on the invoke)."""
    return i % PARTITIONS


def key_of(i: int) -> bytes:
    return f"k{i}".encode()


def value_of(prefix: str, i: int) -> bytes:
    return f"{prefix}-{i:05d}".encode()


class ConsumeGoal:
    """Shared by a group's consumers: reached once every partition was read to its end offset.

    The end offsets may be given later (`set_end_offsets`): consumers can start, and be
    given their partitions, before anything is produced. The deadline bounds the wait for
    the end offsets (generously) and then the reading itself.
    """

    def __init__(
        self, end_offsets: Mapping[int, int] | None = None, *, deadline_s: float = DEADLINE_S
    ) -> None:
        self._lock = threading.Lock()
        self._read_to: dict[int, int] = {}  # partition -> one past the highest offset read
        self._ends: dict[int, int] | None = None
        self._deadline_s = deadline_s
        self.deadline = time.monotonic() + 3 * deadline_s
        if end_offsets is not None:
            self.set_end_offsets(end_offsets)

    def set_end_offsets(self, end_offsets: Mapping[int, int]) -> None:
        with self._lock:
            self._ends = {p: end for p, end in end_offsets.items() if end > 0}
            self.deadline = time.monotonic() + self._deadline_s

    def note(self, partition: int, offset: int) -> None:
        with self._lock:
            self._read_to[partition] = max(self._read_to.get(partition, 0), offset + 1)

    @property
    def reached(self) -> bool:
        with self._lock:
            ends = self._ends
            return ends is not None and all(self._read_to.get(p, 0) >= e for p, e in ends.items())

    def give_up(self) -> None:
        """Let the consumers stop now (the test already failed elsewhere)."""
        self.deadline = 0.0

    @property
    def expired(self) -> bool:
        return time.monotonic() > self.deadline

    def describe(self) -> str:
        with self._lock:
            return f"end offsets {self._ends}, read up to {self._read_to}"


def end_offsets(acked: Mapping[str, tuple[int, int]]) -> dict[int, int]:
    """Partition -> one past the highest acknowledged offset."""
    out: dict[int, int] = {}
    for partition, offset in acked.values():
        out[partition] = max(out.get(partition, 0), offset + 1)
    return out


def assert_dense(acked: Mapping[str, tuple[int, int]], partitions: int) -> None:
    """Without failures, the acknowledged offsets of each partition are exactly 0..n-1."""
    by_partition: dict[int, list[int]] = {p: [] for p in range(partitions)}
    for partition, offset in acked.values():
        by_partition[partition].append(offset)
    for p, offsets in by_partition.items():
        assert offsets, f"partition {p} got no records"
        assert sorted(offsets) == list(range(len(offsets))), (
            f"partition {p}: acknowledged offsets are not 0..{len(offsets) - 1}"
        )


class _Flag:
    """A rebalance listener that remembers that the consumer's assignment changed."""

    changed = False

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.changed = True

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.changed = True

    def take(self) -> bool:
        changed, self.changed = self.changed, False
        return changed


class RebalanceFlag(_Flag, kafka.ConsumerRebalanceListener):
    pass


class AioRebalanceFlag(_Flag, aiokafka.abc.ConsumerRebalanceListener):
    pass
