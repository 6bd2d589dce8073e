"""fit_response drops fields a version lacks, keeps typos for the codec to refuse."""

from __future__ import annotations

import pytest

from quorumdb.kafka.protocol import ApiKey, LocalProtocolError, MessageKind, decode, encode
from quorumdb.kafka.protocol.fit import fit_response


def _list_offsets_body(**extra: object) -> dict[str, object]:
    return {
        "throttle_time_ms": 0,
        "topics": [
            {
                "name": "t",
                "partitions": [
                    {
                        "partition_index": 0,
                        "error_code": 0,
                        "timestamp": -1,
                        "offset": 7,
                        "leader_epoch": 3,
                        **extra,
                    }
                ],
            }
        ],
    }


def test_fields_a_version_lacks_are_dropped_at_every_level() -> None:
    fitted = fit_response(ApiKey.LIST_OFFSETS, 3, _list_offsets_body())
    part = fitted["topics"][0]["partitions"][0]  # type: ignore[index]
    assert "leader_epoch" not in part  # v4+ only
    data = encode(ApiKey.LIST_OFFSETS, 3, MessageKind.RESPONSE, fitted)
    back = decode(ApiKey.LIST_OFFSETS, 3, MessageKind.RESPONSE, data)
    assert back["topics"][0]["partitions"][0]["offset"] == 7
    kept = fit_response(ApiKey.LIST_OFFSETS, 5, _list_offsets_body())
    assert kept["topics"][0]["partitions"][0]["leader_epoch"] == 3  # type: ignore[index]


def test_a_misspelled_field_still_fails_to_encode() -> None:
    fitted = fit_response(ApiKey.LIST_OFFSETS, 5, _list_offsets_body(ofset=1))
    with pytest.raises(LocalProtocolError, match="ofset"):
        encode(ApiKey.LIST_OFFSETS, 5, MessageKind.RESPONSE, fitted)
