"""A minimal blocking Kafka client over one socket, for probing a live broker.

It frames requests with `quorumdb.kafka.protocol.encode_request` and reads responses with
`decode_response`: enough to ask Metadata or FindCoordinator, to produce a hand-built batch,
and to send bytes that no real client would.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from quorumdb.kafka.protocol import ApiKey, decode_response, encode_request

Addr = tuple[str, int]

METADATA_VERSION = 8
PRODUCE_VERSION = 7
FETCH_VERSION = 11
FIND_COORDINATOR_VERSION = 2
CREATE_TOPICS_VERSION = 4
DESCRIBE_GROUPS_VERSION = 0


class NotReadyError(ValueError):
    """A retriable answer: the cluster has not converged yet (e.g. a node that just
    restarted does not know a topic, or a group has no coordinator during an election).

    A ValueError, so `harness.wait_for` keeps polling and reports the last one on timeout.
    """


class KafkaWire:
    """One connection to a broker; requests are answered in order, one at a time."""

    def __init__(self, addr: Addr, *, timeout_s: float = 5.0) -> None:
        self.addr = addr
        self.sock = socket.create_connection(addr, timeout=timeout_s)
        self._correlation_id = 0

    def __enter__(self) -> KafkaWire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def send_bytes(self, data: bytes) -> None:
        self.sock.sendall(data)

    def shutdown_write(self) -> None:
        """Half-close: the broker sees end of stream after what was sent."""
        self.sock.shutdown(socket.SHUT_WR)

    def _read_exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return bytes(buf)

    def read_frame(self) -> bytes | None:
        """The next response frame (size prefix included), or None at end of stream."""
        head = self._read_exactly(4)
        if head is None:
            return None
        (size,) = struct.unpack(">i", head)
        assert 0 <= size < 64 << 20, f"broker sent a frame size of {size}"
        body = self._read_exactly(size)
        assert body is not None, f"stream ended inside a {size}-byte response frame"
        return head + body

    def request(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        self._correlation_id += 1
        cid = self._correlation_id
        self.sock.sendall(encode_request(api_key, version, body, correlation_id=cid))
        frame = self.read_frame()
        assert frame is not None, f"broker {self.addr} closed the connection on API {api_key}"
        got, response = decode_response(api_key, version, frame)
        assert got == cid, f"correlation id {got}, expected {cid}"
        return response


def metadata(addr: Addr, topics: list[str] | None = None) -> dict[str, Any]:
    body = {
        "topics": None if topics is None else [{"name": t} for t in topics],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    with KafkaWire(addr) as w:
        return w.request(ApiKey.METADATA, METADATA_VERSION, body)


def partition_leaders(addr: Addr, topic: str) -> dict[int, int]:
    """Partition index -> leader node id (-1 while there is none), as `addr` sees it."""
    md = metadata(addr, [topic])
    (t,) = md["topics"]
    if t["error_code"] != 0:
        raise NotReadyError(f"Metadata for {topic!r} from {addr}: error {t['error_code']}")
    return {p["partition_index"]: p["leader_id"] for p in t["partitions"]}


def preferred_leaders(addr: Addr, topic: str) -> dict[int, int]:
    """Partition index -> its preferred leader (the first replica), as `addr` sees it."""
    md = metadata(addr, [topic])
    (t,) = md["topics"]
    if t["error_code"] != 0:
        raise NotReadyError(f"Metadata for {topic!r} from {addr}: error {t['error_code']}")
    return {p["partition_index"]: p["replica_nodes"][0] for p in t["partitions"]}


def find_coordinator(addr: Addr, group_id: str) -> int:
    body = {"key": group_id, "key_type": 0}
    with KafkaWire(addr) as w:
        r = w.request(ApiKey.FIND_COORDINATOR, FIND_COORDINATOR_VERSION, body)
    if r["error_code"] != 0:
        raise NotReadyError(f"FindCoordinator({group_id!r}) at {addr}: error {r['error_code']}")
    node: int = r["node_id"]
    return node


def describe_group(addr: Addr, group_id: str) -> dict[str, Any]:
    """The group as its coordinator at `addr` describes it (state, members, assignments)."""
    with KafkaWire(addr) as w:
        r = w.request(ApiKey.DESCRIBE_GROUPS, DESCRIBE_GROUPS_VERSION, {"groups": [group_id]})
    (g,) = r["groups"]
    if g["error_code"] != 0:
        raise NotReadyError(f"DescribeGroups({group_id!r}) at {addr}: error {g['error_code']}")
    return dict(g)


def produce(addr: Addr, topic: str, partition: int, records: bytes) -> dict[str, Any]:
    """Produce one payload with acks=all; returns the partition's response row."""
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 10_000,
        "topic_data": [
            {"name": topic, "partition_data": [{"index": partition, "records": records}]}
        ],
    }
    with KafkaWire(addr, timeout_s=15.0) as w:
        r = w.request(ApiKey.PRODUCE, PRODUCE_VERSION, body)
    (t,) = r["responses"]
    (p,) = t["partition_responses"]
    return dict(p)


def fetch(
    addr: Addr, topic: str, partition: int, offset: int, *, max_bytes: int = 4 << 20
) -> dict[str, Any]:
    """One Fetch (read_uncommitted, no wait); returns the partition's response row."""
    body = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 0,
        "max_bytes": max_bytes,
        "isolation_level": 0,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": partition,
                        "current_leader_epoch": -1,
                        "fetch_offset": offset,
                        "log_start_offset": -1,
                        "partition_max_bytes": max_bytes,
                    }
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    with KafkaWire(addr) as w:
        r = w.request(ApiKey.FETCH, FETCH_VERSION, body)
    assert r["error_code"] == 0, f"Fetch: top-level error {r['error_code']}"
    (t,) = r["responses"]
    (p,) = t["partitions"]
    return dict(p)


def create_topic(addr: Addr, topic: str, partitions: int, replication_factor: int = 3) -> None:
    body = {
        "topics": [
            {
                "name": topic,
                "num_partitions": partitions,
                "replication_factor": replication_factor,
                "assignments": [],
                "configs": [],
            }
        ],
        "timeout_ms": 10_000,
        "validate_only": False,
    }
    with KafkaWire(addr, timeout_s=15.0) as w:
        r = w.request(ApiKey.CREATE_TOPICS, CREATE_TOPICS_VERSION, body)
    (t,) = r["topics"]
    assert t["error_code"] == 0, f"CreateTopics {topic!r}: {t}"
