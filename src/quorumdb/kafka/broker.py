"""The Kafka broker's request handlers: one coroutine per API, over a `BrokerBackend`.

The handlers speak the protocol (request dict in, response dict out, `ErrorCode`s) and know
what Kafka clients expect; everything about Raft groups, storage, time and the network is
behind `BrokerBackend` (implemented by `kafka.backend`); the broker-wide topic defaults
are `BrokerSettings`. The connection loop lives in `runtime.kafka_server`.

Rules the clients rely on (shared/KAFKA.md): the high watermark is the Raft commit (apply)
point, so consumers never see uncommitted records; acks=all answers after commit; a
non-leader answers NOT_LEADER_OR_FOLLOWER so clients refresh metadata and retry; the last
stable offset equals the high watermark while there are no transactions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from quorumdb.kafka.metadata import (
    DEFAULT_CONFIGS,
    TopicConfigError,
    TopicInfo,
    place_replicas,
    topic_configs,
    validate_topic_name,
)
from quorumdb.kafka.partition import ProduceResult
from quorumdb.kafka.protocol.apis import ApiKey, api_versions_body
from quorumdb.kafka.protocol.connection import Request
from quorumdb.kafka.protocol.errors import ErrorCode, RemoteProtocolError
from quorumdb.kafka.protocol.records import validate_batches

__all__ = ["Broker", "BrokerBackend", "BrokerSettings", "PartitionView"]

_EARLIEST = -2
_LATEST = -1
_MAX_TIMESTAMP = -3


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerSettings:
    """The broker-wide defaults of Kafka's server.properties that quorumdb honours (set in
    the node config, `host.config.NodeConfig`)."""

    num_partitions: int = 1  # num.partitions
    default_replication_factor: int | None = None  # None: min(3, number of brokers)
    auto_create_topics_enable: bool = True

    def replication_factor(self, brokers: int) -> int:
        """default.replication.factor in a cluster of `brokers` brokers."""
        if self.default_replication_factor is not None:
            return self.default_replication_factor
        return min(3, brokers)


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionView:
    """What this node knows of one partition's Raft group right now."""

    group: int
    leader: int  # node id, or -1
    leader_epoch: int  # the group's Raft term
    is_leader: bool  # this node leads it (and can serve produce/fetch)
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    high_watermark: int
    log_start_offset: int


class BrokerBackend(Protocol):
    node_id: int
    cluster_id: str

    def now_ms(self) -> int: ...

    def brokers(self) -> list[tuple[int, str, int]]: ...

    def controller_id(self) -> int: ...

    def topics(self) -> dict[str, TopicInfo]: ...

    async def sync_topics(self) -> None:
        """Return once this node applied every topic change committed before the call.

        Best effort and bounded: without a controller quorum it returns after a short wait.
        """
        ...

    def partition(self, topic: TopicInfo, index: int) -> PartitionView | None: ...

    async def wait_for_leaders(self, timeout_ms: int) -> None:
        """Wait (at most `timeout_ms`) until what this node knows of partition leaders
        changes: a partition with no known leader may have one a moment later."""
        ...

    async def create_topic(
        self, name: str, partitions: int, replication_factor: int, configs: dict[str, str]
    ) -> None:
        """Raises TopicConfigError (INVALID_*), FileExistsError (TOPIC_ALREADY_EXISTS)."""
        ...

    async def delete_topic(self, name: str) -> None:
        """Raises KeyError for an unknown topic."""
        ...

    async def produce(
        self, group: int, records: bytes, *, acks: int, timeout_ms: int, log_append_time: bool
    ) -> ProduceResult: ...

    def read(self, group: int, offset: int, max_bytes: int) -> bytes: ...

    async def wait_for_data(self, groups: list[int], timeout_ms: int) -> None:
        """Return when any of `groups` applied new data, or after `timeout_ms`."""
        ...

    def offset_for_time(self, group: int, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch at or after `timestamp_ms`, or None."""
        ...

    def end_offset_for_epoch(self, group: int, epoch: int) -> tuple[int, int]: ...

    async def allocate_producer_id(self) -> int: ...

    def coordinator_for(self, group_id: str) -> int | None: ...

    def is_coordinator(self, group_id: str) -> bool: ...

    async def commit_offsets(
        self, group_id: str, offsets: dict[tuple[str, int], tuple[int, str | None]]
    ) -> None: ...

    async def fetch_offsets(
        self, group_id: str
    ) -> dict[tuple[str, int], tuple[int, str | None]]: ...

    def group_join(
        self, req: dict[str, Any], client_host: str, reply: Callable[[dict[str, Any]], None]
    ) -> None: ...

    def group_sync(self, req: dict[str, Any], reply: Callable[[dict[str, Any]], None]) -> None: ...

    def group_heartbeat(self, req: dict[str, Any]) -> ErrorCode: ...

    def group_leave(self, group_id: str, member_ids: list[str]) -> list[ErrorCode]: ...

    def group_generation(self, group_id: str, member_id: str) -> int | None: ...

    def describe_group(self, group_id: str) -> dict[str, Any]: ...

    def list_groups(self) -> list[tuple[str, str]]: ...


Handler = Callable[["Broker", Request, str], Awaitable[dict[str, Any]]]


class Broker:
    """Dispatches decoded requests to handlers; returns response bodies."""

    def __init__(self, backend: BrokerBackend, settings: BrokerSettings | None = None) -> None:
        self.backend = backend
        self.settings = settings or BrokerSettings()

    async def handle(self, request: Request, client_host: str) -> dict[str, Any]:
        handler = _HANDLERS.get(request.api_key)
        if handler is None:
            raise RemoteProtocolError(
                f"API {request.api_key} is not served", code=ErrorCode.UNSUPPORTED_VERSION
            )
        return await handler(self, request, client_host)


# -- handlers --------------------------------------------------------------------------------


async def _api_versions(b: Broker, req: Request, host: str) -> dict[str, Any]:
    code = ErrorCode.NONE if req.is_version_supported else ErrorCode.UNSUPPORTED_VERSION
    return api_versions_body(code)


def _broker_rows(b: Broker) -> list[dict[str, Any]]:
    return [{"node_id": n, "host": h, "port": p, "rack": None} for n, h, p in b.backend.brokers()]


def _partition_rows(b: Broker, t: TopicInfo) -> list[dict[str, Any]]:
    rows = []
    for p in t.partitions:
        v = b.backend.partition(t, p.partition)
        if v is None or v.leader < 0:
            rows.append(
                {
                    "error_code": ErrorCode.LEADER_NOT_AVAILABLE,
                    "partition_index": p.partition,
                    "leader_id": -1,
                    "leader_epoch": -1,
                    "replica_nodes": list(p.replicas),
                    "isr_nodes": list(p.replicas),
                    "offline_replicas": [],
                }
            )
            continue
        rows.append(
            {
                "error_code": ErrorCode.NONE,
                "partition_index": p.partition,
                "leader_id": v.leader,
                "leader_epoch": v.leader_epoch,
                "replica_nodes": list(v.replicas),
                "isr_nodes": list(v.isr),
                "offline_replicas": [],
            }
        )
    return rows


_LEADER_WAIT_MS = 500  # how long Metadata waits for a leader of a partition hosted elsewhere


def _default_replication_factor(b: Broker) -> int:
    return b.settings.replication_factor(len(b.backend.brokers()))


async def _auto_create(b: Broker, names: list[str]) -> dict[str, ErrorCode]:
    """Kafka's auto.create.topics.enable: a topic a client asks for comes into being, with
    num.partitions and default.replication.factor. Returns why a topic could not be.

    Like Kafka (2.x, which created in the Metadata request) the client hears that reason
    (INVALID_TOPIC_EXCEPTION, INVALID_REPLICATION_FACTOR above the cluster size) instead of
    an UNKNOWN_TOPIC_OR_PARTITION it would retry until its timeout.
    """
    failed: dict[str, ErrorCode] = {}
    for name in names:
        try:
            await b.backend.create_topic(
                name, b.settings.num_partitions, _default_replication_factor(b), {}
            )
        except TopicConfigError as exc:
            failed[name] = exc.code
        except (FileExistsError, TimeoutError):
            continue  # a lost race is fine; a timeout leaves it unknown until a retry
    return failed


async def _metadata(b: Broker, req: Request, host: str) -> dict[str, Any]:
    topics = b.backend.topics()
    wanted = req.body.get("topics")
    names = sorted(topics) if wanted is None else [t["name"] for t in wanted]
    missing = [n for n in names if n not in topics]
    if missing:
        # A topic created through another node is committed before it is applied here: catch
        # up with the controller before calling it unknown (or auto-creating it), so that a
        # client never gets UNKNOWN_TOPIC_OR_PARTITION for a topic whose CreateTopics was
        # already answered.
        await b.backend.sync_topics()
        topics = b.backend.topics()
        missing = [n for n in names if n not in topics]
    failed: dict[str, ErrorCode] = {}
    if (
        missing
        and req.body.get("allow_auto_topic_creation", True)
        and b.settings.auto_create_topics_enable
    ):
        failed = await _auto_create(b, missing)
        topics = b.backend.topics()
    rows = _topic_rows(b, names, topics, failed)
    deadline_ms = b.backend.now_ms() + _LEADER_WAIT_MS
    while _leaderless(rows) and (left_ms := deadline_ms - b.backend.now_ms()) > 0:
        # A partition whose leader is not known here yet (a topic just created, a leader
        # being elected, a report on its way): wait briefly rather than send the client
        # into its retry back-off.
        await b.backend.wait_for_leaders(left_ms)
        rows = _topic_rows(b, names, topics, failed)
    body: dict[str, Any] = {
        "throttle_time_ms": 0,
        "brokers": _broker_rows(b),
        "cluster_id": b.backend.cluster_id,
        "controller_id": b.backend.controller_id(),
        "topics": rows,
    }
    return body


def _leaderless(rows: list[dict[str, Any]]) -> bool:
    return any(
        p["error_code"] == ErrorCode.LEADER_NOT_AVAILABLE for r in rows for p in r["partitions"]
    )


def _topic_rows(
    b: Broker, names: list[str], topics: dict[str, TopicInfo], failed: dict[str, ErrorCode]
) -> list[dict[str, Any]]:
    """Metadata's topic rows; `failed`: why auto-creating a topic did not work."""
    rows: list[dict[str, Any]] = []
    for name in names:
        t = topics.get(name)
        if t is None:
            rows.append(
                {
                    "error_code": failed.get(name, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION),
                    "name": name,
                    "is_internal": False,
                    "partitions": [],
                }
            )
            continue
        rows.append(
            {
                "error_code": ErrorCode.NONE,
                "name": name,
                "is_internal": False,
                "partitions": _partition_rows(b, t),
            }
        )
    return rows


async def _create_topics(b: Broker, req: Request, host: str) -> dict[str, Any]:
    results = []
    for t in req.body["topics"]:
        name = t["name"]
        try:
            configs = {c["name"]: c["value"] for c in t.get("configs", [])}
            # -1 asks for the broker's num.partitions / default.replication.factor (KIP-464,
            # CreateTopics v4). Kafka's broker takes it in any version (its client refuses to
            # send it below v4), and so do we; any other value out of range is refused.
            partitions = t["num_partitions"]
            if partitions == -1:
                partitions = b.settings.num_partitions
            rf = t["replication_factor"]
            if rf == -1:
                rf = _default_replication_factor(b)
            if t.get("assignments"):
                raise TopicConfigError(
                    "manual replica assignments are not supported",
                    ErrorCode.INVALID_REPLICA_ASSIGNMENT,
                )
            if req.body.get("validate_only"):
                validate_topic_name(name)
                topic_configs(configs)
                place_replicas([n for n, _, _ in b.backend.brokers()], partitions, rf)
                results.append({"name": name, "error_code": ErrorCode.NONE, "error_message": None})
                continue
            await b.backend.create_topic(
                name, partitions, rf, {k: v for k, v in configs.items() if v is not None}
            )
        except TopicConfigError as exc:
            code = exc.code
            results.append({"name": name, "error_code": code, "error_message": str(exc)})
            continue
        except FileExistsError:
            results.append(
                {
                    "name": name,
                    "error_code": ErrorCode.TOPIC_ALREADY_EXISTS,
                    "error_message": f"topic {name!r} already exists",
                }
            )
            continue
        except TimeoutError as exc:
            results.append(
                {"name": name, "error_code": ErrorCode.REQUEST_TIMED_OUT, "error_message": str(exc)}
            )
            continue
        results.append({"name": name, "error_code": ErrorCode.NONE, "error_message": None})
    return {"throttle_time_ms": 0, "topics": results}


async def _delete_topics(b: Broker, req: Request, host: str) -> dict[str, Any]:
    out = []
    for name in req.body["topic_names"]:
        try:
            await b.backend.delete_topic(name)
        except KeyError:
            out.append({"name": name, "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION})
            continue
        out.append({"name": name, "error_code": ErrorCode.NONE})
    return {"throttle_time_ms": 0, "responses": out}


def _produce_error(index: int, code: ErrorCode, message: str | None = None) -> dict[str, Any]:
    return {
        "index": index,
        "error_code": code,
        "base_offset": -1,
        "log_append_time_ms": -1,
        "log_start_offset": -1,
        "record_errors": [],
        "error_message": message,
    }


async def _produce_partition(
    b: Broker, t: TopicInfo | None, p: dict[str, Any], acks: int, timeout_ms: int
) -> dict[str, Any]:
    index = p["index"]
    if t is None or not 0 <= index < len(t.partitions):
        return _produce_error(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
    view = b.backend.partition(t, index)
    if view is None or not view.is_leader:
        return _produce_error(index, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    records = p.get("records")
    if records is None or len(records) == 0:
        return _produce_error(index, ErrorCode.CORRUPT_MESSAGE, "no record batch")
    if len(records) > int(t.config("max.message.bytes")) + 1024:
        return _produce_error(index, ErrorCode.MESSAGE_TOO_LARGE)
    try:
        # check_records: walk every record of uncompressed batches too, as Kafka's
        # LogValidator does. Header, CRC and length checks alone accepted a batch whose
        # records lie about their lengths under a recomputed CRC (found by the e2e fuzz
        # test), storing bytes that every consumer of the partition then fails to decode.
        batches = validate_batches(records, check_records=True)
    except RemoteProtocolError as exc:
        return _produce_error(index, exc.code, str(exc))
    if len(batches) != 1:
        # Kafka's LogValidator: from produce v3 (magic 2) a partition's data is exactly one
        # record batch. It also keeps a produce entry all-or-nothing: the partition state
        # machine applies an entry's batches one by one.
        return _produce_error(
            index, ErrorCode.INVALID_RECORD, "exactly one record batch per partition"
        )
    # acks=all needs min.insync.replicas in sync, and never fewer than a Raft quorum: without
    # one nothing commits, and the client should hear so now rather than time out.
    quorum = len(view.replicas) // 2 + 1
    if acks == -1 and len(view.isr) < max(int(t.config("min.insync.replicas")), quorum):
        return _produce_error(index, ErrorCode.NOT_ENOUGH_REPLICAS)
    try:
        result = await b.backend.produce(
            view.group,
            bytes(records),
            acks=acks,
            timeout_ms=timeout_ms,
            log_append_time=t.config("message.timestamp.type") == "LogAppendTime",
        )
    except LookupError:
        return _produce_error(index, ErrorCode.NOT_LEADER_OR_FOLLOWER)
    except TimeoutError:
        return _produce_error(index, ErrorCode.REQUEST_TIMED_OUT)
    return {
        "index": index,
        "error_code": result.error,
        "base_offset": result.base_offset,
        "log_append_time_ms": result.log_append_time_ms,
        "log_start_offset": result.log_start_offset,
        "record_errors": [],
        "error_message": result.message or None,
    }


async def _produce(b: Broker, req: Request, host: str) -> dict[str, Any]:
    acks = req.body["acks"]
    timeout_ms = req.body["timeout_ms"]
    topics = b.backend.topics()
    responses = []
    for td in req.body["topic_data"]:
        t = topics.get(td["name"])
        if acks not in (-1, 0, 1):
            parts = [
                _produce_error(p["index"], ErrorCode.INVALID_REQUIRED_ACKS)
                for p in td["partition_data"]
            ]
        else:
            parts = list(
                await asyncio.gather(
                    *(_produce_partition(b, t, p, acks, timeout_ms) for p in td["partition_data"])
                )
            )
        responses.append({"name": td["name"], "partition_responses": parts})
    return {"responses": responses, "throttle_time_ms": 0}


def _fetch_row(index: int, code: ErrorCode, view: PartitionView | None = None) -> dict[str, Any]:
    return {
        "partition_index": index,
        "error_code": code,
        "high_watermark": view.high_watermark if view else -1,
        "last_stable_offset": view.high_watermark if view else -1,
        "log_start_offset": view.log_start_offset if view else -1,
        "aborted_transactions": [],
        "preferred_read_replica": -1,
        "records": b"",
    }


def _fetch_once(
    b: Broker, plan: list[tuple[str, TopicInfo | None, dict[str, Any]]], max_bytes: int
) -> tuple[dict[str, list[dict[str, Any]]], int, list[int]]:
    """One pass over the requested partitions: rows per topic, bytes found, groups read."""
    rows: dict[str, list[dict[str, Any]]] = {}
    total = 0
    groups: list[int] = []
    for name, t, p in plan:
        index = p["partition"]
        out = rows.setdefault(name, [])
        if t is None or not 0 <= index < len(t.partitions):
            out.append(_fetch_row(index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            continue
        view = b.backend.partition(t, index)
        if view is None or not view.is_leader:
            out.append(_fetch_row(index, ErrorCode.NOT_LEADER_OR_FOLLOWER))
            continue
        code = _epoch_error(p.get("current_leader_epoch", -1), view)
        if code != ErrorCode.NONE:
            out.append(_fetch_row(index, code, view))
            continue
        offset = p["fetch_offset"]
        if offset < view.log_start_offset or offset > view.high_watermark:
            out.append(_fetch_row(index, ErrorCode.OFFSET_OUT_OF_RANGE, view))
            continue
        groups.append(view.group)
        budget = min(p["partition_max_bytes"], max(max_bytes - total, 0))
        try:
            data = b.backend.read(view.group, offset, budget) if budget > 0 or total == 0 else b""
        except LookupError:
            # This leader is still fetching those offsets from a peer (it installed a
            # snapshot): the client asks again after a metadata refresh.
            out.append(_fetch_row(index, ErrorCode.NOT_LEADER_OR_FOLLOWER, view))
            continue
        total += len(data)
        row = _fetch_row(index, ErrorCode.NONE, view)
        row["records"] = data
        out.append(row)
    return rows, total, groups


def _epoch_error(current_leader_epoch: int, view: PartitionView) -> ErrorCode:
    """KIP-320 fencing: a client that names a leader epoch must name this leader's.

    An older epoch means the client talks to a leader it should have left behind
    (FENCED_LEADER_EPOCH); a newer one means this broker has not yet learned of the election
    the client saw (UNKNOWN_LEADER_EPOCH). Either way the client refreshes metadata.
    """
    if current_leader_epoch < 0 or current_leader_epoch == view.leader_epoch:
        return ErrorCode.NONE
    if current_leader_epoch < view.leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH


async def _fetch(b: Broker, req: Request, host: str) -> dict[str, Any]:
    body = req.body
    topics = b.backend.topics()
    plan = [
        (t["topic"], topics.get(t["topic"]), p) for t in body["topics"] for p in t["partitions"]
    ]
    max_bytes = body.get("max_bytes", 0x7FFFFFFF)
    rows, total, groups = _fetch_once(b, plan, max_bytes)
    wait_ms = body["max_wait_ms"]
    if total < body["min_bytes"] and wait_ms > 0 and groups:
        # Long poll: wait for any of these partitions to commit more, then read again.
        await b.backend.wait_for_data(groups, wait_ms)
        rows, total, groups = _fetch_once(b, plan, max_bytes)
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "session_id": 0,
        "responses": [{"topic": name, "partitions": parts} for name, parts in rows.items()],
    }


async def _list_offsets(b: Broker, req: Request, host: str) -> dict[str, Any]:
    topics = b.backend.topics()
    out = []
    for td in req.body["topics"]:
        t = topics.get(td["name"])
        parts = []
        for p in td["partitions"]:
            index = p["partition_index"]
            row: dict[str, Any] = {
                "partition_index": index,
                "error_code": ErrorCode.NONE,
                "timestamp": -1,
                "offset": -1,
                "leader_epoch": -1,
            }
            view = b.backend.partition(t, index) if t and 0 <= index < len(t.partitions) else None
            if t is None or view is None:
                row["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif not view.is_leader:
                row["error_code"] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif code := _epoch_error(p.get("current_leader_epoch", -1), view):
                row["error_code"] = code
            else:
                ts = p["timestamp"]
                row["leader_epoch"] = view.leader_epoch
                if ts == _EARLIEST:
                    row["offset"] = view.log_start_offset
                elif ts in (_LATEST, _MAX_TIMESTAMP):
                    row["offset"] = view.high_watermark
                else:
                    found = b.backend.offset_for_time(view.group, ts)
                    if found is not None:
                        row["offset"], row["timestamp"] = found
            parts.append(row)
        out.append({"name": td["name"], "partitions": parts})
    return {"throttle_time_ms": 0, "topics": out}


async def _offset_for_leader_epoch(b: Broker, req: Request, host: str) -> dict[str, Any]:
    topics = b.backend.topics()
    out = []
    for td in req.body["topics"]:
        t = topics.get(td["topic"])
        parts = []
        for p in td["partitions"]:
            index = p["partition"]
            view = b.backend.partition(t, index) if t and 0 <= index < len(t.partitions) else None
            row: dict[str, Any] = {
                "error_code": ErrorCode.NONE,
                "partition": index,
                "leader_epoch": -1,
                "end_offset": -1,
            }
            if view is None:
                row["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif not view.is_leader:
                row["error_code"] = ErrorCode.NOT_LEADER_OR_FOLLOWER
            elif code := _epoch_error(p.get("current_leader_epoch", -1), view):
                row["error_code"] = code
            else:
                epoch, end = b.backend.end_offset_for_epoch(view.group, p["leader_epoch"])
                row["leader_epoch"], row["end_offset"] = epoch, end
            parts.append(row)
        out.append({"topic": td["topic"], "partitions": parts})
    return {"throttle_time_ms": 0, "topics": out}


async def _init_producer_id(b: Broker, req: Request, host: str) -> dict[str, Any]:
    if req.body.get("transactional_id"):
        return {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "producer_id": -1,
            "producer_epoch": -1,
        }
    try:
        pid = await b.backend.allocate_producer_id()
    except TimeoutError:
        return {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "producer_id": -1,
            "producer_epoch": -1,
        }
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "producer_id": pid,
        "producer_epoch": 0,
    }


async def _find_coordinator(b: Broker, req: Request, host: str) -> dict[str, Any]:
    key = req.body["key"]
    if req.body.get("key_type", 0) != 0:
        return {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": "transactions are not supported yet",
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    node = b.backend.coordinator_for(key)
    addr = {n: (h, p) for n, h, p in b.backend.brokers()}.get(node if node is not None else -1)
    if addr is None:
        return {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.COORDINATOR_NOT_AVAILABLE,
            "error_message": None,
            "node_id": -1,
            "host": "",
            "port": -1,
        }
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "error_message": None,
        "node_id": node,
        "host": addr[0],
        "port": addr[1],
    }


def _resolver(fut: asyncio.Future[dict[str, Any]]) -> Callable[[dict[str, Any]], None]:
    def resolve(body: dict[str, Any]) -> None:
        if not fut.done():
            fut.set_result(body)

    return resolve


def _not_coordinator(b: Broker, group_id: str) -> bool:
    return not b.backend.is_coordinator(group_id)


async def _join_group(b: Broker, req: Request, host: str) -> dict[str, Any]:
    body = dict(req.body)
    if _not_coordinator(b, body["group_id"]):
        return {
            "throttle_time_ms": 0,
            "error_code": ErrorCode.NOT_COORDINATOR,
            "generation_id": -1,
            "protocol_name": "",
            "leader": "",
            "member_id": "",
            "members": [],
        }
    body["client_id"] = req.client_id or ""
    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    b.backend.group_join(body, host, _resolver(fut))
    result = await fut
    return {"throttle_time_ms": 0, **result}


async def _sync_group(b: Broker, req: Request, host: str) -> dict[str, Any]:
    if _not_coordinator(b, req.body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR, "assignment": b""}
    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    b.backend.group_sync(req.body, _resolver(fut))
    return {"throttle_time_ms": 0, **(await fut)}


async def _heartbeat(b: Broker, req: Request, host: str) -> dict[str, Any]:
    if _not_coordinator(b, req.body["group_id"]):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR}
    return {"throttle_time_ms": 0, "error_code": b.backend.group_heartbeat(req.body)}


async def _leave_group(b: Broker, req: Request, host: str) -> dict[str, Any]:
    group_id = req.body["group_id"]
    members = req.body.get("members")
    ids = (
        [m["member_id"] for m in members]
        if members is not None
        else [req.body.get("member_id", "")]
    )
    if _not_coordinator(b, group_id):
        return {"throttle_time_ms": 0, "error_code": ErrorCode.NOT_COORDINATOR, "members": []}
    codes = b.backend.group_leave(group_id, ids)
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "members": [
            {"member_id": i, "group_instance_id": None, "error_code": c}
            for i, c in zip(ids, codes, strict=True)
        ],
    }


async def _unknown_partitions(b: Broker, wanted: list[tuple[str, int]]) -> set[tuple[str, int]]:
    """The (topic, partition) pairs of `wanted` that no topic has, once caught up with the
    controller (as in `_metadata`: a topic created through another node may not be applied
    here yet)."""

    def unknown() -> set[tuple[str, int]]:
        topics = b.backend.topics()
        return {
            (name, index)
            for name, index in wanted
            if (t := topics.get(name)) is None or not 0 <= index < len(t.partitions)
        }

    found = unknown()
    if found:
        await b.backend.sync_topics()
        found = unknown()
    return found


async def _offset_commit(b: Broker, req: Request, host: str) -> dict[str, Any]:
    body = req.body
    group_id = body["group_id"]
    # Kafka (KafkaApis.handleOffsetCommitRequest, every version) answers a partition its
    # metadata does not have with UNKNOWN_TOPIC_OR_PARTITION, whatever the group's state,
    # and does not store its offset.
    unknown = await _unknown_partitions(
        b, [(t["name"], p["partition_index"]) for t in body["topics"] for p in t["partitions"]]
    )
    code = ErrorCode.NONE
    generation = body.get("generation_id_or_member_epoch", -1)
    if _not_coordinator(b, group_id):
        code = ErrorCode.NOT_COORDINATOR
    elif generation >= 0:
        known = b.backend.group_generation(group_id, body["member_id"])
        if known is None:
            code = ErrorCode.UNKNOWN_MEMBER_ID
        elif known != generation:
            code = ErrorCode.ILLEGAL_GENERATION
    offsets = {
        (t["name"], p["partition_index"]): (p["committed_offset"], p.get("committed_metadata"))
        for t in body["topics"]
        for p in t["partitions"]
        if (t["name"], p["partition_index"]) not in unknown
    }
    if code == ErrorCode.NONE and offsets:
        try:
            await b.backend.commit_offsets(group_id, offsets)
        except (TimeoutError, LookupError):
            code = ErrorCode.COORDINATOR_NOT_AVAILABLE
    return {
        "throttle_time_ms": 0,
        "topics": [
            {
                "name": t["name"],
                "partitions": [
                    {
                        "partition_index": p["partition_index"],
                        "error_code": ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                        if (t["name"], p["partition_index"]) in unknown
                        else code,
                    }
                    for p in t["partitions"]
                ],
            }
            for t in body["topics"]
        ],
    }


async def _offset_fetch(b: Broker, req: Request, host: str) -> dict[str, Any]:
    group_id = req.body["group_id"]
    if _not_coordinator(b, group_id):
        return {"throttle_time_ms": 0, "topics": [], "error_code": ErrorCode.NOT_COORDINATOR}
    try:
        stored = await b.backend.fetch_offsets(group_id)
    except (TimeoutError, LookupError):
        return {
            "throttle_time_ms": 0,
            "topics": [],
            "error_code": ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        }
    wanted = req.body.get("topics")
    if wanted is None:
        by_topic: dict[str, list[int]] = {}
        for name, part in sorted(stored):
            by_topic.setdefault(name, []).append(part)
        wanted = [{"name": n, "partition_indexes": ps} for n, ps in by_topic.items()]
    # Kafka v1+ (KafkaApis.handleOffsetFetchRequestBetweenV1AndV7) reads the group's offsets
    # with no metadata check: a partition without a committed offset, of an unknown topic
    # too, is -1 with NONE (and OffsetCommit stores none for unknown topics). v0 read them
    # from ZooKeeper and answered UNKNOWN_TOPIC_OR_PARTITION both for an unknown partition
    # and for one without a committed offset (kafka-python: "have you committed any offsets
    # yet?"), which v0 clients still expect.
    missing_code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION if req.api_version == 0 else ErrorCode.NONE
    unknown: set[tuple[str, int]] = set()
    if req.api_version == 0:
        unknown = await _unknown_partitions(
            b, [(t["name"], i) for t in wanted for i in t["partition_indexes"]]
        )
    topics = []
    for t in wanted:
        parts = []
        for index in t["partition_indexes"]:
            key = (t["name"], index)
            found = None if key in unknown else stored.get(key)
            offset, meta = found or (-1, "")
            parts.append(
                {
                    "partition_index": index,
                    "committed_offset": offset,
                    "committed_leader_epoch": -1,
                    "metadata": meta or "",
                    "error_code": ErrorCode.NONE if found else missing_code,
                }
            )
        topics.append({"name": t["name"], "partitions": parts})
    return {"throttle_time_ms": 0, "topics": topics, "error_code": ErrorCode.NONE}


async def _describe_groups(b: Broker, req: Request, host: str) -> dict[str, Any]:
    groups = []
    for group_id in req.body["groups"]:
        if _not_coordinator(b, group_id):
            groups.append(
                {
                    "error_code": ErrorCode.NOT_COORDINATOR,
                    "group_id": group_id,
                    "group_state": "",
                    "protocol_type": "",
                    "protocol_data": "",
                    "members": [],
                }
            )
        else:
            groups.append(b.backend.describe_group(group_id))
    return {"throttle_time_ms": 0, "groups": groups}


async def _list_groups(b: Broker, req: Request, host: str) -> dict[str, Any]:
    return {
        "throttle_time_ms": 0,
        "error_code": ErrorCode.NONE,
        "groups": [{"group_id": g, "protocol_type": t} for g, t in b.backend.list_groups()],
    }


_TOPIC_RESOURCE = 2
_BROKER_RESOURCE = 4
_STATIC_BROKER_CONFIG = 4  # DescribeConfigs config_source values
_DEFAULT_CONFIG = 5


def _broker_configs(b: Broker, keys: list[str] | None) -> list[dict[str, Any]]:
    """This broker's settings as Kafka names them: read-only (there is no AlterConfigs), from
    the node config where they differ from the defaults."""
    s = b.settings
    default = BrokerSettings()
    values = {
        "num.partitions": (str(s.num_partitions), s.num_partitions != default.num_partitions),
        "default.replication.factor": (
            str(_default_replication_factor(b)),
            s.default_replication_factor is not None,
        ),
        "auto.create.topics.enable": (
            str(s.auto_create_topics_enable).lower(),
            s.auto_create_topics_enable != default.auto_create_topics_enable,
        ),
    }
    return [
        {
            "name": key,
            "value": value,
            "read_only": True,
            "config_source": _STATIC_BROKER_CONFIG if is_set else _DEFAULT_CONFIG,
            "is_sensitive": False,
            "synonyms": [],
        }
        for key, (value, is_set) in sorted(values.items())
        if keys is None or key in keys
    ]


async def _describe_configs(b: Broker, req: Request, host: str) -> dict[str, Any]:
    topics = b.backend.topics()
    results = []
    for r in req.body["resources"]:
        name = r["resource_name"]
        keys = r.get("configuration_keys")
        row: dict[str, Any] = {
            "error_code": ErrorCode.NONE,
            "error_message": None,
            "resource_type": r["resource_type"],
            "resource_name": name,
            "configs": [],
        }
        if r["resource_type"] == _BROKER_RESOURCE:
            # Kafka: "" names the cluster-wide dynamic defaults (we have none); a broker id
            # must be the id of the broker asked (clients send it there).
            if name == str(b.backend.node_id):
                row["configs"] = _broker_configs(b, keys)
            elif name:
                row["error_code"] = ErrorCode.INVALID_REQUEST
                row["error_message"] = f"this is broker {b.backend.node_id}, not {name!r}"
        elif r["resource_type"] == _TOPIC_RESOURCE:
            t = topics.get(name)
            if t is None:
                row["error_code"] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            else:
                for key in sorted(DEFAULT_CONFIGS):
                    if keys is None or key in keys:
                        row["configs"].append(
                            {
                                "name": key,
                                "value": t.config(key),
                                "read_only": False,
                                "config_source": 5 if key not in t.configs else 1,
                                "is_sensitive": False,
                                "synonyms": [],
                            }
                        )
        results.append(row)
    return {"throttle_time_ms": 0, "results": results}


_HANDLERS: dict[int, Handler] = {
    ApiKey.API_VERSIONS: _api_versions,
    ApiKey.METADATA: _metadata,
    ApiKey.CREATE_TOPICS: _create_topics,
    ApiKey.DELETE_TOPICS: _delete_topics,
    ApiKey.PRODUCE: _produce,
    ApiKey.FETCH: _fetch,
    ApiKey.LIST_OFFSETS: _list_offsets,
    ApiKey.OFFSET_FOR_LEADER_EPOCH: _offset_for_leader_epoch,
    ApiKey.INIT_PRODUCER_ID: _init_producer_id,
    ApiKey.FIND_COORDINATOR: _find_coordinator,
    ApiKey.JOIN_GROUP: _join_group,
    ApiKey.SYNC_GROUP: _sync_group,
    ApiKey.HEARTBEAT: _heartbeat,
    ApiKey.LEAVE_GROUP: _leave_group,
    ApiKey.OFFSET_COMMIT: _offset_commit,
    ApiKey.OFFSET_FETCH: _offset_fetch,
    ApiKey.DESCRIBE_GROUPS: _describe_groups,
    ApiKey.LIST_GROUPS: _list_groups,
    ApiKey.DESCRIBE_CONFIGS: _describe_configs,
}
