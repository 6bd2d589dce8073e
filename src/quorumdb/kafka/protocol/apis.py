"""The Kafka APIs quorumdb serves and the version ranges it advertises in ApiVersions.

The schema table (`schemas.py`) holds versions 0..max of each API; the codec can read and
write all of them. What we *advertise* starts higher for two APIs, because quorumdb stores
only v2 record batches (magic 2) and never converts formats:
- Produce v0-v2 may carry magic 0/1 message sets -> we advertise Produce v3+;
- Fetch v0-v3 responses must carry magic 0/1 (those clients cannot read v2 batches)
  -> we advertise Fetch v4+.
Kafka 4.0 (KIP-896) drops the same old versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum
from typing import Any

from quorumdb.kafka.protocol._schema import MessageKind, all_message_specs
from quorumdb.kafka.protocol.errors import ErrorCode

__all__ = [
    "SUPPORTED_VERSIONS",
    "ApiKey",
    "api_versions_body",
    "supported_versions",
]


class ApiKey(IntEnum):
    """Kafka API keys of the APIs in the schema table."""

    PRODUCE = 0
    FETCH = 1
    LIST_OFFSETS = 2
    METADATA = 3
    OFFSET_COMMIT = 8
    OFFSET_FETCH = 9
    FIND_COORDINATOR = 10
    JOIN_GROUP = 11
    HEARTBEAT = 12
    LEAVE_GROUP = 13
    SYNC_GROUP = 14
    DESCRIBE_GROUPS = 15
    LIST_GROUPS = 16
    API_VERSIONS = 18
    CREATE_TOPICS = 19
    DELETE_TOPICS = 20
    INIT_PRODUCER_ID = 22
    OFFSET_FOR_LEADER_EPOCH = 23
    ADD_PARTITIONS_TO_TXN = 24
    ADD_OFFSETS_TO_TXN = 25
    END_TXN = 26
    TXN_OFFSET_COMMIT = 28
    DESCRIBE_CONFIGS = 32


# Lowest advertised version where it is above the schema's lowest (see the module docstring).
_MIN_VERSION = {ApiKey.PRODUCE: 3, ApiKey.FETCH: 4}


def _table() -> tuple[tuple[ApiKey, int, int], ...]:
    rows = []
    for spec in all_message_specs():
        if spec.kind is not MessageKind.REQUEST:
            continue
        assert spec.api_key is not None
        key = ApiKey(spec.api_key)
        lo, hi = spec.versions
        lo = max(lo, _MIN_VERSION.get(key, lo))
        assert lo <= hi, f"{key.name}: advertised minimum v{lo} above maximum v{hi}"
        rows.append((key, lo, hi))
    assert len(rows) == len(ApiKey), "ApiKey and the schema table disagree"
    return tuple(sorted(rows))


SUPPORTED_VERSIONS: tuple[tuple[ApiKey, int, int], ...] = _table()


def supported_versions() -> tuple[tuple[ApiKey, int, int], ...]:
    """The (api_key, min_version, max_version) rows the broker advertises, by api key."""
    return SUPPORTED_VERSIONS


def api_versions_body(
    error_code: ErrorCode = ErrorCode.NONE,
    *,
    throttle_time_ms: int = 0,
    supported: Iterable[tuple[int, int, int]] | None = None,
) -> dict[str, Any]:
    """An ApiVersions response body listing our ranges, valid for every version v0-v3.

    With `ErrorCode.UNSUPPORTED_VERSION` it is the answer to an ApiVersions request of a
    version we do not know: encoded as v0, it still lists every range so the client can
    retry with a version we serve (Kafka sends at least the ApiVersions row; we send all).
    """
    rows = SUPPORTED_VERSIONS if supported is None else tuple(supported)
    return {
        "error_code": int(error_code),
        "api_keys": [
            {"api_key": int(key), "min_version": lo, "max_version": hi} for key, lo, hi in rows
        ],
        "throttle_time_ms": throttle_time_ms,
    }
