"""The generated schema table, the advertised versions, and the generator itself."""

from __future__ import annotations

import importlib.util
import json
import runpy
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from quorumdb.kafka.protocol import SUPPORTED_VERSIONS, ApiKey, schemas, supported_versions
from quorumdb.kafka.protocol._schema import MessageKind, all_message_specs, message_spec

ROOT = Path(__file__).resolve().parents[3]

# KAFKA.md's table, with the record-format minimums (magic 2 only): the broker advertises this.
ADVERTISED = {
    ApiKey.PRODUCE: (3, 8),
    ApiKey.FETCH: (4, 11),
    ApiKey.LIST_OFFSETS: (0, 5),
    ApiKey.METADATA: (0, 8),
    ApiKey.OFFSET_COMMIT: (0, 7),
    ApiKey.OFFSET_FETCH: (0, 5),
    ApiKey.FIND_COORDINATOR: (0, 2),
    ApiKey.JOIN_GROUP: (0, 5),
    ApiKey.HEARTBEAT: (0, 3),
    ApiKey.LEAVE_GROUP: (0, 3),
    ApiKey.SYNC_GROUP: (0, 3),
    ApiKey.DESCRIBE_GROUPS: (0, 4),
    ApiKey.LIST_GROUPS: (0, 2),
    ApiKey.API_VERSIONS: (0, 3),
    ApiKey.CREATE_TOPICS: (0, 4),
    ApiKey.DELETE_TOPICS: (0, 3),
    ApiKey.INIT_PRODUCER_ID: (0, 1),
    ApiKey.OFFSET_FOR_LEADER_EPOCH: (0, 2),
    ApiKey.ADD_PARTITIONS_TO_TXN: (0, 2),
    ApiKey.ADD_OFFSETS_TO_TXN: (0, 2),
    ApiKey.END_TXN: (0, 2),
    ApiKey.TXN_OFFSET_COMMIT: (0, 2),
    ApiKey.DESCRIBE_CONFIGS: (0, 2),
}


def test_advertised_versions() -> None:
    assert supported_versions() is SUPPORTED_VERSIONS
    assert {k: (lo, hi) for k, lo, hi in SUPPORTED_VERSIONS} == ADVERTISED
    assert [k for k, _, _ in SUPPORTED_VERSIONS] == sorted(ADVERTISED)


def test_client_minimums_are_inside_the_ranges() -> None:
    # aiokafka insists on these (KAFKA.md)
    table = {k: (lo, hi) for k, lo, hi in SUPPORTED_VERSIONS}
    for key, needed in [
        (ApiKey.METADATA, 5), (ApiKey.PRODUCE, 7), (ApiKey.LIST_OFFSETS, 3),
        (ApiKey.FIND_COORDINATOR, 1), (ApiKey.HEARTBEAT, 1), (ApiKey.LEAVE_GROUP, 1),
        (ApiKey.OFFSET_COMMIT, 3),
    ]:  # fmt: skip
        lo, hi = table[key]
        assert lo <= needed <= hi, key


def test_every_api_has_a_request_and_a_response_with_the_same_versions() -> None:
    for key in ApiKey:
        request = message_spec(key, MessageKind.REQUEST)
        response = message_spec(key, MessageKind.RESPONSE)
        assert request is not None and response is not None, key
        assert request.versions == response.versions
        assert request.flexible_min == response.flexible_min
    assert len(all_message_specs()) == 2 * len(ApiKey)


def test_only_apiversions_v3_is_flexible_among_served_versions() -> None:
    flexible = [
        (k, v) for k, lo, hi in SUPPORTED_VERSIONS for v in range(lo, hi + 1)
        if (s := message_spec(k, MessageKind.REQUEST)) is not None and s.is_flexible(v)
    ]  # fmt: skip
    assert flexible == [(ApiKey.API_VERSIONS, 3)]


def test_generated_module_says_where_it_came_from() -> None:
    text = (ROOT / "src/quorumdb/kafka/protocol/schemas.py").read_text()
    assert "GENERATED" in text
    assert "scripts/gen_kafka_schemas.py" in text
    assert schemas.SOURCE.startswith("apache/kafka@")


# --- the generator, on small specs written here ------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts/gen_kafka_schemas.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(folder: Path, name: str, spec: dict[str, Any]) -> None:
    (folder / f"{name}.json").write_text(
        "// a comment line, as Kafka's files have\n" + json.dumps(spec)
    )


HEADER = {
    "type": "header", "name": "RequestHeader", "validVersions": "0-2", "flexibleVersions": "2+",
    "fields": [
        {"name": "RequestApiKey", "type": "int16", "versions": "0+"},
        {"name": "ClientId", "type": "string", "versions": "1+", "nullableVersions": "1+",
         "flexibleVersions": "none"},
    ],
}  # fmt: skip


def _toy_folder(tmp_path: Path, extra_field: dict[str, Any] | None = None) -> Path:
    folder = tmp_path / "clients/src/main/resources/common/message"
    folder.mkdir(parents=True)
    _write(folder, "RequestHeader", HEADER)
    _write(folder, "ResponseHeader", {
        "type": "header", "name": "ResponseHeader", "validVersions": "0-1",
        "flexibleVersions": "1+", "fields": [
            {"name": "CorrelationId", "type": "int32", "versions": "0+"}],
    })  # fmt: skip
    fields: list[dict[str, Any]] = [
        {"name": "GroupId", "type": "string", "versions": "0+", "about": "x",
         "entityType": "groupId"},
        {"name": "MemberEpoch", "type": "int32", "versions": "1+", "default": "0x7fffffff",
         "ignorable": True},
        {"name": "Gone", "type": "int8", "versions": "9+"},
        {"name": "Topics", "type": "[]ToyTopic", "versions": "0+", "nullableVersions": "0+",
         "fields": [
             {"name": "Name", "type": "string", "versions": "0+", "mapKey": True},
             {"name": "Ends", "type": "[]Ends", "versions": "1+"},
         ]},
        {"name": "TopicID", "type": "uuid", "versions": "0-1", "nullableVersions": "0+"},
        {"name": "Tagged", "type": "bool", "versions": "2+", "taggedVersions": "2+", "tag": 0},
    ]  # fmt: skip
    if extra_field:
        fields.append(extra_field)
    toy = {
        "apiKey": 0, "type": "request", "name": "ProduceRequest", "validVersions": "0-11",
        "flexibleVersions": "2+", "fields": fields,
        "commonStructs": [{"name": "Ends", "versions": "0+", "fields": [
            {"name": "Offset", "type": "int64", "versions": "0+", "default": "-1"}]}],
    }  # fmt: skip
    _write(folder, "ProduceRequest", toy)
    return tmp_path


def test_generator_converts_a_toy_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = _generator()
    monkeypatch.setattr(gen, "_APIS", (("Produce", 3),))
    monkeypatch.setattr(gen, "_message", _only_requests(gen._message))
    out = tmp_path / "out.py"
    assert gen.main([str(_toy_folder(tmp_path)), "--source", "toy@1", "--out", str(out)]) == 0
    data = runpy.run_path(str(out))
    assert data["SOURCE"] == "toy@1"
    msg = data["MESSAGES"]["ProduceRequest"]
    assert (msg["api_key"], msg["versions"], msg["spec_versions"], msg["flexible_min"]) == (
        0,
        (0, 3),
        "0-11",
        2,
    )
    fields = {f["name"]: f for f in msg["fields"]}
    assert list(fields) == ["group_id", "member_epoch", "topics", "topic_id", "tagged"]  # no "gone"
    assert fields["member_epoch"] == {
        "name": "member_epoch", "kafka_name": "MemberEpoch", "type": "int32", "versions": (1, 3),
        "ignorable": True, "default": "0x7fffffff",
    }  # fmt: skip
    assert fields["topic_id"]["nullable_versions"] == (0, 1)  # clipped to the field's versions
    assert (fields["tagged"]["tagged_versions"], fields["tagged"]["tag"]) == ((2, 3), 0)
    ends = fields["topics"]["fields"][1]
    assert ends["type"] == "[]Ends"
    assert ends["fields"][0] == {
        "name": "offset", "kafka_name": "Offset", "type": "int64", "versions": (0, 3),
        "default": "-1",
    }  # fmt: skip
    header = data["MESSAGES"]["RequestHeader"]["fields"][1]
    assert header["flexible_versions"] is None


def _only_requests(real: Any) -> Any:
    # The toy folder has no ProduceResponse: reuse the request spec for it.
    def message(path: Path, max_version: int) -> Any:
        if path.name == "ProduceResponse.json":
            path = path.with_name("ProduceRequest.json")
        return real(path, max_version)

    return message


def test_generator_fails_loudly_on_what_it_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gen = _generator()
    monkeypatch.setattr(gen, "_APIS", (("Produce", 3),))
    monkeypatch.setattr(gen, "_message", _only_requests(gen._message))
    folder = _toy_folder(tmp_path, {"name": "Odd", "type": "int32", "versions": "0+", "shiny": 1})
    assert gen.main([str(folder), "--out", str(tmp_path / "out.py")]) == 1
    assert "unknown keys ['shiny']" in capsys.readouterr().err
    assert gen.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "out.py")]) == 2
