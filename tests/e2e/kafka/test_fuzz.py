"""Hostile bytes against a live node's Kafka port: it answers an error or hangs up, nothing more.

Hypothesis sends, each on a fresh connection that is half-closed after the bytes: random
bytes, truncated requests, size prefixes out of range, valid headers with garbage bodies,
valid requests of most APIs with a few bytes overwritten, API keys and versions the broker
does not serve, and Produce requests whose record batch is corrupt (bad CRC, wrong magic,
bad batchLength, truncated, trailing bytes; and, under a recomputed CRC, a record count that
disagrees with lastOffsetDelta, a record whose length lies, a record cut short, bytes after
the last record). The target is the leader of the topic's only partition, so corrupt batches
reach validation.

Per example: the broker answers within a bounded time or closes the connection; a corrupt
batch gets CORRUPT_MESSAGE; an unknown API or version closes the connection without an
answer (ApiVersions of a newer version gets error 35, KIP-511); the process is still alive.
After all examples: /v1/health and Metadata answer, the node's RSS grew by less than a
generous bound, the node logged no traceback (a handler that crashes on input is a bug even
though the server survives it), the partition's high watermark did not move (nothing corrupt
was stored), and the records produced before the fuzzing come back byte for byte.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from quorumdb.kafka.protocol import SUPPORTED_VERSIONS, ApiKey, decode_response, encode_request
from quorumdb.kafka.protocol.records import (
    BATCH_HEADER_BYTES,
    Record,
    build_batch,
    crc_of,
    iter_batches,
)
from tests.e2e.harness import Cluster, get_json, wait_for
from tests.e2e.kafka.conftest import kafka_addrs
from tests.e2e.kafka.wire import (
    Addr,
    KafkaWire,
    create_topic,
    fetch,
    metadata,
    partition_leaders,
    preferred_leaders,
    produce,
)

TOPIC = "fuzz"
CORRUPT_MESSAGE = 2
UNSUPPORTED_VERSION = 35
MAX_REQUEST_BYTES = 100 << 20  # the broker's default limit
ANSWER_TIMEOUT_S = 10.0  # generous: a loaded machine; only a long-polling Fetch waits it out
RSS_GROWTH_MAX_KB = 150 << 10  # generous: allocator slack, not a leak detector
EXAMPLES = 100  # per kind of input

SERVED = {int(k): (lo, hi) for k, lo, hi in SUPPORTED_VERSIONS}
_BATCH_LENGTH_AT = 8
_MAGIC_AT = 16
_CRC_AT = 17
_CRC_FROM = 21  # the CRC covers the attributes field to the end of the batch
_RECORD_COUNT_AT = 57

_settings = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def _exchange(addr: Addr, data: bytes) -> tuple[list[bytes], bool]:
    """Send `data`, half-close, read until the broker hangs up: (frames, closed in time)."""
    frames: list[bytes] = []
    with KafkaWire(addr, timeout_s=ANSWER_TIMEOUT_S) as w:
        try:
            w.send_bytes(data)
            w.shutdown_write()
        except (BrokenPipeError, ConnectionResetError):
            return frames, True  # it hung up while we were still sending: fine
        try:
            while (frame := w.read_frame()) is not None:
                frames.append(frame)
        except ConnectionResetError:
            return frames, True
        except TimeoutError:
            return frames, False
    return frames, True


_NOT_ENOUGH_REPLICAS = 19


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def _header(api_key: int, version: int, correlation_id: int = 1) -> bytes:
    client_id = b"fuzz"
    return struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id


def _batch(n: int, seed: int) -> bytes:
    return build_batch(
        [
            Record(key=f"k{seed}-{i}".encode(), value=f"v{seed}-{i}".encode() * (1 + i % 4))
            for i in range(n)
        ]
    )


def _produce_request(records: bytes, version: int, correlation_id: int = 1) -> bytes:
    body = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5_000,
        "topic_data": [{"name": TOPIC, "partition_data": [{"index": 0, "records": records}]}],
    }
    return encode_request(ApiKey.PRODUCE, version, body, correlation_id=correlation_id)


def _valid_requests() -> list[bytes]:
    metadata_body = {
        "topics": [{"name": TOPIC}],
        "allow_auto_topic_creation": False,
        "include_cluster_authorized_operations": False,
        "include_topic_authorized_operations": False,
    }
    return [
        encode_request(ApiKey.API_VERSIONS, 2, {}, correlation_id=1),
        encode_request(ApiKey.METADATA, 8, metadata_body, correlation_id=2),
        _produce_request(_batch(3, 0), 7, correlation_id=3),
    ]


def _mutable_requests() -> list[tuple[int, int, dict[str, object]]]:
    """Valid requests of APIs that answer at once and leave the fuzz topic alone.

    Not here: JoinGroup/SyncGroup (they wait for a rebalance), CreateTopics, DeleteTopics and
    Metadata (a mutated name could create or delete topics).
    """
    scratch = "fuzz-scratch"  # mutated Produce requests may legitimately store records
    return [
        (ApiKey.API_VERSIONS, 2, {}),
        (
            ApiKey.PRODUCE,
            7,
            {
                "transactional_id": None,
                "acks": -1,
                "timeout_ms": 5_000,
                "topic_data": [
                    {"name": scratch, "partition_data": [{"index": 0, "records": _batch(2, 7)}]}
                ],
            },
        ),
        (
            ApiKey.FETCH,
            11,
            {
                "replica_id": -1,
                "max_wait_ms": 0,
                "min_bytes": 0,
                "max_bytes": 1 << 20,
                "isolation_level": 1,
                "session_id": 0,
                "session_epoch": -1,
                "topics": [
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {
                                "partition": 0,
                                "current_leader_epoch": -1,
                                "fetch_offset": 3,
                                "log_start_offset": -1,
                                "partition_max_bytes": 1 << 20,
                            }
                        ],
                    }
                ],
                "forgotten_topics_data": [],
                "rack_id": "",
            },
        ),
        (
            ApiKey.LIST_OFFSETS,
            5,
            {
                "replica_id": -1,
                "isolation_level": 0,
                "topics": [
                    {
                        "name": TOPIC,
                        "partitions": [
                            {"partition_index": 0, "current_leader_epoch": -1, "timestamp": -2}
                        ],
                    }
                ],
            },
        ),
        (
            ApiKey.OFFSET_FOR_LEADER_EPOCH,
            2,
            {
                "topics": [
                    {
                        "topic": TOPIC,
                        "partitions": [
                            {"partition": 0, "current_leader_epoch": -1, "leader_epoch": 1}
                        ],
                    }
                ]
            },
        ),
        (ApiKey.FIND_COORDINATOR, 2, {"key": "fuzz-group", "key_type": 0}),
        (
            ApiKey.OFFSET_COMMIT,
            7,
            {
                "group_id": "fuzz-group",
                "generation_id_or_member_epoch": -1,
                "member_id": "",
                "group_instance_id": None,
                "topics": [
                    {
                        "name": TOPIC,
                        "partitions": [
                            {
                                "partition_index": 0,
                                "committed_offset": 5,
                                "committed_leader_epoch": -1,
                                "committed_metadata": "",
                            }
                        ],
                    }
                ],
            },
        ),
        (
            ApiKey.OFFSET_FETCH,
            5,
            {"group_id": "fuzz-group", "topics": [{"name": TOPIC, "partition_indexes": [0]}]},
        ),
        (
            ApiKey.HEARTBEAT,
            3,
            {
                "group_id": "fuzz-group",
                "generation_id": 1,
                "member_id": "m",
                "group_instance_id": None,
            },
        ),
        (
            ApiKey.LEAVE_GROUP,
            3,
            {"group_id": "fuzz-group", "members": [{"member_id": "m", "group_instance_id": None}]},
        ),
        (
            ApiKey.DESCRIBE_GROUPS,
            4,
            {"groups": ["fuzz-group"], "include_authorized_operations": False},
        ),
        (ApiKey.LIST_GROUPS, 2, {}),
        (ApiKey.INIT_PRODUCER_ID, 1, {"transactional_id": None, "transaction_timeout_ms": 1000}),
        (
            ApiKey.DESCRIBE_CONFIGS,
            2,
            {
                "resources": [
                    {"resource_type": 2, "resource_name": TOPIC, "configuration_keys": None}
                ],
                "include_synonyms": False,
            },
        ),
    ]


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[int, bytes]:
    """A valid request with a few bytes of its header or body overwritten (size kept)."""
    api_key, version, body = draw(st.sampled_from(_mutable_requests()))
    frame = bytearray(encode_request(api_key, version, body, correlation_id=1))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(12, len(frame) - 1))  # after size, api key, version, correlation
        frame[at] = draw(st.integers(0, 255))
    return api_key, bytes(frame)


# -- corrupt record batches ---------------------------------------------------------------------


def _set(buf: bytearray, at: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, buf, at, value)


def _reseal(buf: bytearray) -> None:
    struct.pack_into(">I", buf, _CRC_AT, crc_of(memoryview(buf)[_CRC_FROM:]))


def _known_corruptions() -> list[bytes]:
    """One batch per kind that must be refused, tried on every run (explicit examples)."""
    out = []
    for kind in ("crc", "magic", "record-length", "record-cut", "record-extra"):
        batch = bytearray(_batch(3, 1))
        if kind == "crc":
            batch[30] ^= 0x40
        elif kind == "magic":
            batch[_MAGIC_AT] = 1
        elif kind == "record-length":  # the first record claims 2 bytes more than it holds
            batch[BATCH_HEADER_BYTES] += 4
        elif kind == "record-cut":
            del batch[-3:]
        else:
            batch += b"\x00\x01"
        if kind.startswith("record-"):
            _set(batch, _BATCH_LENGTH_AT, ">i", len(batch) - 12)
            _reseal(batch)
        out.append(bytes(batch))
    return out


@st.composite
def corrupt_batches(draw: st.DrawFn) -> bytes:
    batch = bytearray(_batch(draw(st.integers(1, 5)), draw(st.integers(0, 999))))
    kind = draw(
        st.sampled_from(
            [
                "bit-flip",
                "crc",
                "magic",
                "length-small",
                "length-large",
                "truncated",
                "trailing",
                "record-count",
                "record-length",
                "record-cut",
                "record-extra",
            ]
        )
    )
    if kind == "bit-flip":  # anywhere the CRC covers
        at = draw(st.integers(_CRC_FROM, len(batch) - 1))
        batch[at] ^= 1 << draw(st.integers(0, 7))
    elif kind == "crc":
        _set(
            batch,
            _CRC_AT,
            ">I",
            crc_of(memoryview(batch)[_CRC_FROM:]) ^ draw(st.integers(1, 0xFFFFFFFF)),
        )
    elif kind == "magic":
        batch[_MAGIC_AT] = draw(st.integers(0, 255).filter(lambda m: m != 2))
    elif kind == "length-small":
        _set(batch, _BATCH_LENGTH_AT, ">i", draw(st.integers(-(1 << 31), 48)))
    elif kind == "length-large":
        _set(batch, _BATCH_LENGTH_AT, ">i", draw(st.integers(len(batch) - 11, (1 << 31) - 1)))
    elif kind == "truncated":
        del batch[draw(st.integers(1, len(batch) - 1)) :]
    elif kind == "trailing":
        batch += draw(st.binary(min_size=1, max_size=100))
    elif kind == "record-count":  # lastOffsetDelta no longer matches; CRC recomputed
        count = struct.unpack_from(">i", batch, _RECORD_COUNT_AT)[0]
        other = st.integers(-(1 << 31), (1 << 31) - 1).filter(lambda c: c != count)
        _set(batch, _RECORD_COUNT_AT, ">i", draw(other))
        _reseal(batch)
    elif kind == "record-length":  # the first record's length varint lies; CRC recomputed
        length = batch[BATCH_HEADER_BYTES] >> 1  # one-byte zigzag varint: records are short
        batch[BATCH_HEADER_BYTES] = draw(st.integers(0, 63).filter(lambda n: n != length)) << 1
        _reseal(batch)
    elif kind == "record-cut":  # the last record is cut short; lengths and CRC consistent
        del batch[-draw(st.integers(1, 8)) :]
        _set(batch, _BATCH_LENGTH_AT, ">i", len(batch) - 12)
        _reseal(batch)
    else:  # bytes after the last record, inside the batch; lengths and CRC consistent
        batch += draw(st.binary(min_size=1, max_size=40))
        _set(batch, _BATCH_LENGTH_AT, ">i", len(batch) - 12)
        _reseal(batch)
    return bytes(batch)


# -- the test -----------------------------------------------------------------------------------


def test_hostile_input_gets_errors_or_a_hangup_and_the_node_keeps_its_data(
    kafka_cluster: Cluster,
) -> None:
    cluster = kafka_cluster
    addrs = kafka_addrs(cluster)
    create_topic(addrs[1], TOPIC, partitions=1)
    # The preferred replica: the broker hands the partition to it soon after creation, and
    # a leader change during the fuzzing would turn CORRUPT_MESSAGE into NOT_LEADER.
    leader = preferred_leaders(addrs[1], TOPIC)[0]
    wait_for(
        lambda: all(partition_leaders(a, TOPIC)[0] == leader for a in addrs.values()),
        f"every node to see node {leader} lead the topic's partition",
        timeout_s=60,
    )
    target = addrs[leader]
    pid = cluster.state.pids[leader]

    before: list[bytes] = []
    for seed in range(40):
        batch = _batch(1 + seed % 5, seed)
        rows: list[dict[str, object]] = []

        def acked(batch: bytes = batch, rows: list[dict[str, object]] = rows) -> bool:
            # A leader just elected counts its followers in sync only once they answer its
            # first append: until then it says NOT_ENOUGH_REPLICAS (19), which clients retry.
            rows.append(produce(target, TOPIC, 0, batch))
            return rows[-1]["error_code"] != _NOT_ENOUGH_REPLICAS

        wait_for(acked, "the leader to have its followers in sync", timeout_s=30)
        assert rows[-1]["error_code"] == 0, rows[-1]
        before.append(batch)
    high_watermark = fetch(target, TOPIC, 0, 0)["high_watermark"]
    assert high_watermark == sum(1 + s % 5 for s in range(40))
    rss_before_kb = _rss_kb(pid)
    stats = {"corrupt": 0, "answered": 0, "closed": 0}

    def alive() -> None:
        os.kill(pid, 0)  # raises ProcessLookupError once the node is gone

    @_settings
    @given(st.binary(max_size=4096))
    def random_bytes(data: bytes) -> None:
        _, closed = _exchange(target, data)
        assert closed, f"broker neither answered nor closed on {data[:40]!r}"
        alive()

    @_settings
    @given(st.sampled_from(_valid_requests()), st.data())
    def truncated(request: bytes, data: st.DataObject) -> None:
        cut = data.draw(st.integers(1, len(request) - 1))
        frames, closed = _exchange(target, request[:cut])
        assert closed and not frames, f"answered a request cut at {cut}/{len(request)}"
        alive()

    @_settings
    @given(
        st.one_of(
            st.integers(MAX_REQUEST_BYTES + 1, (1 << 31) - 1),
            st.integers(-(1 << 31), 9),
            st.integers(10_000, MAX_REQUEST_BYTES),
        ),
        st.binary(max_size=256),
    )
    def size_prefix(size: int, rest: bytes) -> None:
        frames, closed = _exchange(target, struct.pack(">i", size) + rest)
        assert closed and not frames, f"answered a frame announcing {size} bytes"
        alive()

    @_settings
    @given(
        st.sampled_from(sorted(SERVED)).flatmap(
            lambda k: st.tuples(st.just(k), st.integers(*SERVED[k]))
        ),
        st.binary(max_size=512),
    )
    def garbage_body(api: tuple[int, int], body: bytes) -> None:
        api_key, version = api
        frames, _ = _exchange(target, _frame(_header(api_key, version) + body))
        for f in frames:
            assert struct.unpack_from(">i", f, 4)[0] == 1, "wrong correlation id"
        stats["answered" if frames else "closed"] += 1
        alive()

    @_settings
    @given(mutated_requests())
    def mutated(request: tuple[int, bytes]) -> None:
        api_key, frame = request
        frames, closed = _exchange(target, frame)
        # A Fetch whose wait and min_bytes were both mutated may legitimately long-poll.
        assert closed or api_key == ApiKey.FETCH, f"no answer, no hangup: {frame.hex()}"
        for f in frames:
            assert struct.unpack_from(">i", f, 4)[0] == 1, "wrong correlation id"
        stats["answered" if frames else "closed"] += 1
        alive()

    @_settings
    @given(
        st.one_of(
            st.integers(-(1 << 15), (1 << 15) - 1)
            .filter(lambda k: k not in SERVED)
            .map(lambda k: (k, 0)),
            st.sampled_from(sorted(SERVED)).flatmap(
                lambda k: st.tuples(
                    st.just(k),
                    st.integers(SERVED[k][1] + 1, (1 << 15) - 1)
                    | st.integers(-(1 << 15), SERVED[k][0] - 1),
                )
            ),
        ),
        st.binary(max_size=64),
    )
    def unknown_api(api: tuple[int, int], body: bytes) -> None:
        api_key, version = api
        header = _header(api_key, version)
        newer_api_versions = api_key == ApiKey.API_VERSIONS and version > SERVED[api_key][1]
        if newer_api_versions:
            header += b"\x00"  # request header v2 (flexible): an empty tagged-field section
        frames, closed = _exchange(target, _frame(header + body))
        assert closed
        if newer_api_versions:
            assert len(frames) == 1, f"ApiVersions v{version}: {len(frames)} answers"
            _, answer = decode_response(api_key, version, frames[0])
            assert answer["error_code"] == UNSUPPORTED_VERSION, answer
        else:
            assert not frames, f"answered API {api_key} v{version}"
        alive()

    @_settings
    @given(corrupt_batches(), st.integers(*SERVED[ApiKey.PRODUCE]))
    @example(_known_corruptions()[0], 3)
    @example(_known_corruptions()[1], 5)
    @example(_known_corruptions()[2], 7)
    @example(_known_corruptions()[3], 8)
    @example(_known_corruptions()[4], 7)
    def corrupt_produce(records: bytes, version: int) -> None:
        frames, closed = _exchange(target, _produce_request(records, version))
        assert closed
        assert len(frames) == 1, f"Produce v{version} with a corrupt batch: {len(frames)} answers"
        _, answer = decode_response(ApiKey.PRODUCE, version, frames[0])
        (row,) = answer["responses"][0]["partition_responses"]
        assert row["error_code"] == CORRUPT_MESSAGE, (row, records[:80].hex())
        stats["corrupt"] += 1
        alive()

    fuzzers = (random_bytes, truncated, size_prefix, garbage_body, mutated, unknown_api)
    for fuzz in (*fuzzers, corrupt_produce):
        fuzz()

    assert stats["corrupt"] >= EXAMPLES // 2, stats
    health = get_json(cluster.url(leader) + "/v1/health")
    assert health["status"] == "ok", health
    md = metadata(target, [TOPIC])
    assert md["topics"][0]["error_code"] == 0, md
    assert len(md["brokers"]) == len(addrs), md["brokers"]
    rss_after_kb = _rss_kb(pid)
    assert rss_after_kb - rss_before_kb < RSS_GROWTH_MAX_KB, (rss_before_kb, rss_after_kb)
    log = cluster.log(leader)
    assert "Traceback" not in log, log[log.index("Traceback") - 500 :][:4000]

    row = fetch(target, TOPIC, 0, 0, max_bytes=16 << 20)
    assert row["error_code"] == 0, row
    assert row["high_watermark"] == high_watermark, "the fuzzing changed the partition's log"
    data = bytes(row["records"])
    got = [data[h.position : h.end] for h in iter_batches(data)]
    assert len(got) == len(before), (len(got), len(before))
    offset = 0
    for sent, stored in zip(before, got, strict=True):
        # The broker patches baseOffset and partitionLeaderEpoch, which the CRC leaves out.
        assert struct.unpack_from(">q", stored, 0)[0] == offset
        assert stored[8:12] == sent[8:12] and stored[16:] == sent[16:], "a batch changed"
        offset += struct.unpack_from(">i", sent, _RECORD_COUNT_AT)[0]
    print(f"RSS {rss_before_kb} -> {rss_after_kb} KiB; {stats}")
