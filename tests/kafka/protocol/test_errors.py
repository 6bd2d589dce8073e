"""ErrorCode values and retriability; the ProtocolError family."""

from __future__ import annotations

import pytest

from quorumdb.errors import QuorumError
from quorumdb.kafka.protocol import (
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    UnsupportedRequestError,
)

# The codes quorumdb's broker and clients rely on, with Kafka's numbers.
EXPECTED = {
    "NONE": 0,
    "UNKNOWN_SERVER_ERROR": -1,
    "OFFSET_OUT_OF_RANGE": 1,
    "CORRUPT_MESSAGE": 2,
    "UNKNOWN_TOPIC_OR_PARTITION": 3,
    "INVALID_FETCH_SIZE": 4,
    "LEADER_NOT_AVAILABLE": 5,
    "NOT_LEADER_OR_FOLLOWER": 6,
    "REQUEST_TIMED_OUT": 7,
    "MESSAGE_TOO_LARGE": 10,
    "COORDINATOR_LOAD_IN_PROGRESS": 14,
    "COORDINATOR_NOT_AVAILABLE": 15,
    "NOT_COORDINATOR": 16,
    "INVALID_TOPIC_EXCEPTION": 17,
    "RECORD_LIST_TOO_LARGE": 18,
    "NOT_ENOUGH_REPLICAS": 19,
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND": 20,
    "INVALID_REQUIRED_ACKS": 21,
    "ILLEGAL_GENERATION": 22,
    "INCONSISTENT_GROUP_PROTOCOL": 23,
    "INVALID_GROUP_ID": 24,
    "UNKNOWN_MEMBER_ID": 25,
    "INVALID_SESSION_TIMEOUT": 26,
    "REBALANCE_IN_PROGRESS": 27,
    "UNSUPPORTED_VERSION": 35,
    "TOPIC_ALREADY_EXISTS": 36,
    "INVALID_PARTITIONS": 37,
    "INVALID_REPLICATION_FACTOR": 38,
    "INVALID_REQUEST": 42,
    "OUT_OF_ORDER_SEQUENCE_NUMBER": 45,
    "DUPLICATE_SEQUENCE_NUMBER": 46,
    "INVALID_PRODUCER_EPOCH": 47,
    "INVALID_TXN_STATE": 48,
    "CONCURRENT_TRANSACTIONS": 51,
    "UNKNOWN_PRODUCER_ID": 59,
    "FENCED_LEADER_EPOCH": 74,
    "UNKNOWN_LEADER_EPOCH": 75,
    "MEMBER_ID_REQUIRED": 79,
    "INVALID_RECORD": 87,
    "PRODUCER_FENCED": 90,
}


@pytest.mark.parametrize(("name", "value"), EXPECTED.items())
def test_codes_have_kafkas_numbers(name: str, value: int) -> None:
    assert ErrorCode[name] == value


RETRIABLE = [
    "CORRUPT_MESSAGE",
    "UNKNOWN_TOPIC_OR_PARTITION",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_OR_FOLLOWER",
    "REQUEST_TIMED_OUT",
    "COORDINATOR_LOAD_IN_PROGRESS",
    "COORDINATOR_NOT_AVAILABLE",
    "NOT_COORDINATOR",
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "CONCURRENT_TRANSACTIONS",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
]
NOT_RETRIABLE = [
    "NONE",
    "UNKNOWN_SERVER_ERROR",
    "OFFSET_OUT_OF_RANGE",
    "MESSAGE_TOO_LARGE",
    "INVALID_REQUEST",
    "UNSUPPORTED_VERSION",
    "TOPIC_ALREADY_EXISTS",
    "ILLEGAL_GENERATION",
    "REBALANCE_IN_PROGRESS",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "INVALID_PRODUCER_EPOCH",
    "UNKNOWN_PRODUCER_ID",
    "PRODUCER_FENCED",
    "MEMBER_ID_REQUIRED",
]


@pytest.mark.parametrize("name", RETRIABLE)
def test_retriable(name: str) -> None:
    assert ErrorCode[name].retriable


@pytest.mark.parametrize("name", NOT_RETRIABLE)
def test_not_retriable(name: str) -> None:
    assert not ErrorCode[name].retriable


def test_protocol_error_is_abstract() -> None:
    with pytest.raises(TypeError, match="abstract"):
        ProtocolError("x", code=ErrorCode.INVALID_REQUEST)


def test_the_family() -> None:
    remote = RemoteProtocolError("bad frame")
    local = LocalProtocolError("bad value", code=ErrorCode.UNSUPPORTED_VERSION)
    unsupported = UnsupportedRequestError(
        "no", api_key=1, api_version=99, correlation_id=4, code=ErrorCode.UNSUPPORTED_VERSION
    )
    for e in (remote, local, unsupported):
        assert isinstance(e, ProtocolError)
        assert isinstance(e, QuorumError)
    assert isinstance(unsupported, RemoteProtocolError)
    assert remote.code is ErrorCode.INVALID_REQUEST
    assert str(local) == "bad value (UNSUPPORTED_VERSION)"
    assert (unsupported.api_key, unsupported.api_version, unsupported.correlation_id) == (1, 99, 4)
