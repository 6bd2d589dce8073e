"""Produce validation in the broker: what is refused before anything is proposed."""

from __future__ import annotations

from quorumdb.kafka.protocol import ApiKey
from quorumdb.kafka.protocol.errors import ErrorCode
from quorumdb.kafka.protocol.records import Record, build_batch
from tests.kafka.test_broker_settings import _call, _MemoryBackend


def _produce(backend: _MemoryBackend, records: bytes) -> dict[str, object]:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 1_000,
        "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}],
    }
    (topic,) = _call(backend, ApiKey.PRODUCE, 8, body)["responses"]
    (row,) = topic["partition_responses"]
    return row


def test_two_batches_for_one_partition_are_an_invalid_record() -> None:
    """As Kafka does from produce v3 on; it also keeps an entry all-or-nothing (the state
    machine applies an entry's batches one by one: see the xfail in the partition tests).
    The memory backend has no `produce`: reaching it would fail the test."""
    backend = _MemoryBackend()
    backend._topics["t"] = backend.topic("t", 1)
    one = build_batch([Record(value=b"a", timestamp_ms=1)])
    row = _produce(backend, one + build_batch([Record(value=b"b", timestamp_ms=2)]))
    assert row["error_code"] == ErrorCode.INVALID_RECORD
    assert "one record batch" in str(row["error_message"])
