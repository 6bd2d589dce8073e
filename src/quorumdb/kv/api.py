"""The KV service over HTTP/JSON, with its OpenAPI document generated from the routes.

Keys are path segments (percent-encoded as needed) and values are JSON strings (UTF-8).
Every error is JSON `{"error": "..."}` with a status a client can act on:
400 malformed request, 404 no such key or route, 409 compare-and-set failed, 413 key or
value too large, 421 not the leader (the body and the `Location` header name the leader),
503 no quorum or timed out (retry with the same `client_id`/`seq`: writes apply at most once),
or, from `/v1/health`, the node's driver stopped or stalled (the node is failed).

`dispatch(service, method, target, body)` is the whole API, free of any web framework: it
matches the route, runs the handler and maps exceptions to statuses, returning a `Reply`.
A node serves it with its own lean HTTP/1.1 server (`runtime.http`: the hot path of a put is
a few microseconds of parsing instead of a framework's request/response machinery);
`build_app` wraps the very same function in an aiohttp application for tests and embedding.
"""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import msgspec
from aiohttp import web

from quorumdb.kv.commands import Isolation, Outcome, Result
from quorumdb.kv.service import (
    Consistency,
    KVService,
    NotLeaderHereError,
    ServiceUnavailableError,
    TxnStep,
    ValueRecord,
)
from quorumdb.kv.txn_errors import (
    CommitOutcomeUnknownError,
    SerializationFailureError,
    TxnBusyError,
    TxnClosedError,
    TxnError,
    TxnNotFoundError,
    TxnTooLargeError,
)

__all__ = [
    "BODY_BYTES_MAX",
    "KEY_BYTES_MAX",
    "SCAN_LIMIT_MAX",
    "VALUE_BYTES_MAX",
    "Reply",
    "build_app",
    "dispatch",
    "openapi",
]

KEY_BYTES_MAX = 4096
VALUE_BYTES_MAX = 1 << 20
SCAN_LIMIT_MAX = 10_000
BODY_BYTES_MAX = 2 * VALUE_BYTES_MAX


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


@dataclass(frozen=True, slots=True)
class _Route:
    method: str
    path: str
    summary: str
    params: tuple[tuple[str, str, str], ...] = ()  # (name, in, description)
    body: str | None = None
    responses: tuple[tuple[int, str], ...] = ((200, "OK"),)


ROUTES = (
    _Route(
        "GET",
        "/v1/kv/{key}",
        "Read one key",
        (
            ("key", "path", "the key"),
            ("consistency", "query", "linearizable (default) | lease | stale"),
        ),
        responses=((200, "value and revision"), (404, "no such key"), (421, "not leader")),
    ),
    _Route(
        "PUT",
        "/v1/kv/{key}",
        "Write one key; with expected_revision, compare-and-set (0: must be absent)",
        (("key", "path", "the key"),),
        body='{"value": str, "expected_revision"?: int, "client_id"?: int, "seq"?: int}',
        responses=((200, "new revision"), (409, "revision mismatch"), (413, "too large")),
    ),
    _Route(
        "DELETE",
        "/v1/kv/{key}",
        "Delete one key",
        (
            ("key", "path", "the key"),
            ("client_id", "query", "optional request id (with seq) for at-most-once retries"),
            ("seq", "query", "optional request sequence number"),
        ),
        responses=((200, "deleted"), (404, "no such key")),
    ),
    _Route(
        "GET",
        "/v1/kv",
        "Range scan in key order",
        (
            ("start", "query", "first key (inclusive), default ''"),
            ("end", "query", "last key (exclusive), default: no bound"),
            ("limit", "query", f"at most this many (1..{SCAN_LIMIT_MAX}, default 100)"),
            ("consistency", "query", "linearizable (default) | lease | stale"),
        ),
    ),
    _Route(
        "POST",
        "/v1/txn",
        "Begin a transaction; with `ops` and `commit: true`, run it whole in one request",
        body='{"isolation"?: "read_committed"|"snapshot"|"serializable"|"read_uncommitted", '
        '"timeout_ms"?: int, "seen_ts"?: int, "ops"?: [op...], "commit"?: bool}',
        responses=(
            (200, "the transaction id (and the ops' results)"),
            (400, "bad isolation level, timeout or op"),
            (409, "serialization failure (code 40001, retryable)"),
        ),
    ),
    _Route(
        "POST",
        "/v1/txn/{id}",
        'Run operations in the transaction: ["get", k], ["put", k, v], ["delete", k], '
        '["scan", start, end|null, limit]',
        (("id", "path", "the transaction id (from POST /v1/txn)"),),
        body='{"ops": [op...]}',
        responses=(
            (200, "one result per op"),
            (404, "no such transaction"),
            (410, "the transaction is finished or expired"),
            (421, "begun on another node (Location names it)"),
        ),
    ),
    _Route(
        "POST",
        "/v1/txn/{id}/commit",
        "Commit (after running `ops`, if given): all writes become visible at once, or none",
        (("id", "path", "the transaction id"),),
        body='{"ops"?: [op...]}',
        responses=(
            (200, "committed, with its commit timestamp"),
            (409, "serialization failure (code 40001): aborted, retry the transaction"),
            (503, "unavailable; if `outcome_unknown`, it may have committed"),
        ),
    ),
    _Route(
        "POST",
        "/v1/txn/{id}/abort",
        "Abort: nothing the transaction wrote is ever visible",
        (("id", "path", "the transaction id"),),
    ),
    _Route("GET", "/v1/cluster", "Members, groups, leaders, terms, indexes, follower lag"),
    _Route(
        "POST",
        "/v1/admin/members",
        "Add a node as a voter of every group (start it first, with an empty data dir)",
        body='{"id": int, "raft": "host:port", "http": "host:port"}',
        responses=((200, "added"), (421, "not the controller leader")),
    ),
    _Route(
        "DELETE",
        "/v1/admin/members/{id}",
        "Remove a node from every group (leadership is moved away first)",
        (("id", "path", "node id"),),
        responses=((200, "removed"), (404, "not a member")),
    ),
    _Route(
        "POST",
        "/v1/admin/transfer-leader",
        "Move leadership of one group (or all) to a node",
        body='{"to": int, "group"?: int}',
        responses=((200, "moved"), (404, "unknown node or group")),
    ),
    _Route(
        "GET",
        "/v1/health",
        "Liveness of this node: driver rounds, the last one's age, groups without a leader",
        responses=((200, "serving"), (503, "the driver stopped or stalled: the node is failed")),
    ),
    _Route("GET", "/metrics", "Prometheus text metrics"),
    _Route("GET", "/v1/openapi.json", "This document"),
)


def openapi() -> dict[str, Any]:
    """The OpenAPI 3 document, generated from `ROUTES`."""
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "summary": r.summary,
            "parameters": [
                {
                    "name": name,
                    "in": where,
                    "required": where == "path",
                    "description": desc,
                    "schema": {"type": "string"},
                }
                for name, where, desc in r.params
            ],
            "responses": {str(code): {"description": d} for code, d in r.responses},
        }
        if r.body:
            op["requestBody"] = {
                "required": True,
                "description": r.body,
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "quorumdb KV", "version": "1"},
        "paths": paths,
    }


_JSON = "application/json; charset=utf-8"
_encode = msgspec.json.encode
_decode = msgspec.json.decode


class Reply(NamedTuple):
    """An answer: what `runtime.http` writes (and `build_app` turns into a web.Response)."""

    status: int
    body: bytes
    content_type: str = _JSON
    headers: tuple[tuple[str, str], ...] = ()


def _json(doc: Any, status: int = 200) -> Reply:
    return Reply(status, _encode(doc))


def _error(status: int, message: str, **extra: Any) -> Reply:
    return Reply(status, _encode({"error": message, **extra}))


class _Request:
    """What a handler sees: the service, the method, the (raw) path, query and body."""

    __slots__ = ("_query", "body", "method", "param", "path", "qs", "service")

    def __init__(
        self, service: KVService, method: str, path: str, *, qs: str, body: bytes, param: str
    ) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.qs = qs
        self.body = body
        self.param = param  # the {key} or {id} path segment, percent-decoded
        self._query: dict[str, str] | None = None

    @property
    def query(self) -> dict[str, str]:
        q = self._query
        if q is None:
            q = {}
            if self.qs:
                for k, v in urllib.parse.parse_qsl(self.qs, keep_blank_values=True):
                    q.setdefault(k, v)
            self._query = q
        return q


_RequestHandler = Callable[[_Request], Awaitable[Reply]]


async def dispatch(service: KVService, method: str, target: str, body: bytes) -> Reply:
    """Answer one request (`target`: the raw path and query). The one place where routes are
    matched and exceptions become HTTP statuses; every answer is JSON but /metrics."""
    path, _, qs = target.partition("?")
    param = ""
    if path.startswith("/v1/kv/"):
        raw = path[7:]
        if "/" in raw or not raw:
            return _error(404, f"no route for {method} {_unquote(path)}")
        pattern = "/v1/kv/{key}"
        param = _unquote(raw)
    elif path.startswith("/v1/txn/"):
        raw, _, action = path[8:].partition("/")
        if not raw or "/" in action or action not in ("", "commit", "abort"):
            return _error(404, f"no route for {method} {_unquote(path)}")
        pattern = "/v1/txn/{id}" + (f"/{action}" if action else "")
        param = _unquote(raw)
    elif path.startswith("/v1/admin/members/"):
        raw = path[18:]
        if "/" in raw or not raw:
            return _error(404, f"no route for {method} {_unquote(path)}")
        pattern = "/v1/admin/members/{id}"
        param = _unquote(raw)
    else:
        pattern = path
    methods = _ROUTE_TABLE.get(pattern)
    if methods is None:
        return _error(404, f"no route for {method} {_unquote(path)}")
    handler = methods.get(method)
    if handler is None:
        allowed = ", ".join(sorted(methods))
        return _error(405, f"method {method} not allowed (allowed: {allowed})")
    request = _Request(service, method, path, qs=qs, body=body, param=param)
    try:
        return await handler(request)
    except _HTTPError as exc:
        return _error(exc.status, exc.message, **exc.extra)
    except NotLeaderHereError as exc:
        reply = _error(421, str(exc), leader=exc.leader_url)
        if exc.leader_url:
            return reply._replace(headers=(("Location", exc.leader_url + target),))
        return reply
    except CommitOutcomeUnknownError as exc:
        return _error(503, str(exc), outcome_unknown=True)
    except ServiceUnavailableError as exc:
        return _error(503, str(exc))
    except SerializationFailureError as exc:
        return _error(409, str(exc), code=SerializationFailureError.sqlstate, retryable=True)
    except TxnNotFoundError as exc:
        return _error(404, str(exc))
    except TxnClosedError as exc:
        return _error(410, str(exc))
    except TxnBusyError as exc:
        return _error(409, str(exc), code="busy")
    except TxnTooLargeError as exc:
        return _error(413, str(exc))
    except TxnError as exc:
        return _error(400, str(exc))
    except LookupError as exc:
        return _error(404, str(exc).strip("'\""))


def _unquote(s: str) -> str:
    return urllib.parse.unquote(s) if "%" in s else s


def _key(request: _Request) -> bytes:
    key = request.param.encode()
    if not key:
        raise _HTTPError(400, "empty key")
    if len(key) > KEY_BYTES_MAX:
        raise _HTTPError(413, f"key of {len(key)} bytes exceeds {KEY_BYTES_MAX}")
    return key


_CONSISTENCY = {c.value: c for c in Consistency}


def _consistency(request: _Request) -> Consistency:
    if not request.qs:
        return Consistency.LINEARIZABLE
    raw = request.query.get("consistency", Consistency.LINEARIZABLE.value)
    c = _CONSISTENCY.get(raw)
    if c is None:
        allowed = ", ".join(c.value for c in Consistency)
        raise _HTTPError(400, f"consistency must be one of {allowed}, not {raw!r}")
    return c


def _record(r: ValueRecord) -> dict[str, Any]:
    return {
        "key": r.key.decode(errors="replace"),
        "value": r.value.decode(errors="replace"),
        "revision": r.revision,
    }


def _json_body(request: _Request) -> dict[str, Any]:
    try:
        body = _decode(request.body)
    except msgspec.DecodeError as exc:
        raise _HTTPError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise _HTTPError(400, "JSON body must be an object")
    return body


def _int_field(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = body.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _HTTPError(400, f"{name!r} must be an integer in [{lo}, {hi}]")
    return v


def _write_result(result: Result) -> Reply:
    if result.outcome == Outcome.CAS_FAILED:
        raise _HTTPError(409, "revision mismatch", revision=result.revision)
    if result.outcome == Outcome.NOT_FOUND:
        raise _HTTPError(404, "no such key")
    return Reply(
        200,
        b'{"revision":%d,"previous_revision":%d}' % (result.revision, result.previous_revision),
    )


async def _get(request: _Request) -> Reply:
    rec = await request.service.get(_key(request), _consistency(request))
    if rec is None:
        raise _HTTPError(404, "no such key")
    return _json(_record(rec))


async def _put(request: _Request) -> Reply:
    key = _key(request)
    body = _json_body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise _HTTPError(400, "'value' must be a string")
    data = value.encode()
    if len(data) > VALUE_BYTES_MAX:
        raise _HTTPError(413, f"value of {len(data)} bytes exceeds {VALUE_BYTES_MAX}")
    if len(body) == 1:  # just the value: the common case
        expected, client, seq = -1, 0, 0
    else:
        expected = _int_field(body, "expected_revision", -1, -1, 1 << 62)
        client = _int_field(body, "client_id", 0, 0, (1 << 63) - 1)
        seq = _int_field(body, "seq", 0, 0, (1 << 63) - 1)
    result = await request.service.put(
        key, data, expected_revision=expected, client=client, seq=seq
    )
    return _write_result(result)


async def _delete(request: _Request) -> Reply:
    key = _key(request)
    ids: dict[str, Any] = {}
    query = request.query
    for name in ("client_id", "seq"):
        if name in query:
            try:
                ids[name] = int(query[name])
            except ValueError:
                raise _HTTPError(400, f"{name!r} must be an integer") from None
    client = _int_field(ids, "client_id", 0, 0, (1 << 63) - 1)
    seq = _int_field(ids, "seq", 0, 0, (1 << 63) - 1)
    result = await request.service.delete(key, client=client, seq=seq)
    return _write_result(result)


async def _scan(request: _Request) -> Reply:
    q = request.query
    start = q.get("start", "").encode()
    end_s = q.get("end")
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise _HTTPError(400, "'limit' must be an integer") from None
    if not 1 <= limit <= SCAN_LIMIT_MAX:
        raise _HTTPError(400, f"'limit' must be in [1, {SCAN_LIMIT_MAX}]")
    recs = await request.service.scan(
        start, end_s.encode() if end_s is not None else None, limit, _consistency(request)
    )
    return _json({"items": [_record(r) for r in recs], "count": len(recs)})


async def _cluster(request: _Request) -> Reply:
    return _json(request.service.cluster_status())


async def _add_member(request: _Request) -> Reply:
    body = _json_body(request)
    node_id = _int_field(body, "id", 0, 1, 1 << 31)
    raft, http = body.get("raft"), body.get("http")
    if not isinstance(raft, str) or not isinstance(http, str):
        raise _HTTPError(400, "'raft' and 'http' must be 'host:port' strings")
    return _json(await request.service.add_member(node_id, raft, http))


async def _remove_member(request: _Request) -> Reply:
    try:
        node_id = int(request.param)
    except ValueError:
        raise _HTTPError(400, "node id must be an integer") from None
    return _json(await request.service.remove_member(node_id))


async def _transfer_leader(request: _Request) -> Reply:
    body = _json_body(request)
    to = _int_field(body, "to", 0, 1, 1 << 31)
    group = _int_field(body, "group", -1, -1, 1 << 16)
    result = await request.service.transfer_leader(to, None if group < 0 else group)
    return _json(result)


async def _health(request: _Request) -> Reply:
    doc = request.service.health()
    return _json(doc, 200 if doc["status"] == "ok" else 503)


async def _metrics(request: _Request) -> Reply:
    text = request.service.metrics_text()
    return Reply(200, text.encode(), "text/plain; charset=utf-8")


_ISOLATION = {i.name.lower(): i for i in Isolation}
_ISOLATION["snapshot_isolation"] = Isolation.SNAPSHOT
TXN_OPS_MAX = 10_000
_TXN_TIMEOUT_MS_MAX = 20_000


def _txn_steps(raw: Any) -> list[TxnStep]:
    """Parse `ops` (a list of arrays); every bad op is a 400 naming its position."""
    if not isinstance(raw, list):
        raise _HTTPError(400, "'ops' must be a list of operations")
    if len(raw) > TXN_OPS_MAX:
        raise _HTTPError(413, f"at most {TXN_OPS_MAX} operations per request")
    return [_txn_step(i, op) for i, op in enumerate(raw)]


def _txn_step(i: int, op: Any) -> TxnStep:
    where = f"op {i}"
    if not isinstance(op, list) or not op or not isinstance(op[0], str):
        raise _HTTPError(400, f"{where}: an operation is an array starting with its name")
    name, args = op[0], op[1:]
    shapes = {"get": 1, "delete": 1, "put": 2}
    if name in shapes:
        if len(args) != shapes[name] or not all(isinstance(a, str) for a in args):
            raise _HTTPError(400, f"{where}: {name} takes {shapes[name]} string argument(s)")
        key = _txn_key(where, args[0])
        value = None
        if name == "put":
            value = args[1].encode()
            if len(value) > VALUE_BYTES_MAX:
                raise _HTTPError(
                    413, f"{where}: value of {len(value)} bytes exceeds {VALUE_BYTES_MAX}"
                )
        return TxnStep(op=name, key=key, value=value)
    if name == "scan":
        if (
            len(args) != 3
            or not isinstance(args[0], str)
            or not (args[1] is None or isinstance(args[1], str))
            or isinstance(args[2], bool)
            or not isinstance(args[2], int)
            or not 1 <= args[2] <= SCAN_LIMIT_MAX
        ):
            raise _HTTPError(
                400, f"{where}: scan takes start, end (or null) and a limit in 1..{SCAN_LIMIT_MAX}"
            )
        end = None if args[1] is None else args[1].encode()
        return TxnStep(op="scan", key=args[0].encode(), end=end, limit=args[2])
    raise _HTTPError(400, f"{where}: unknown operation {name!r} (get, put, delete, scan)")


def _txn_key(where: str, raw: str) -> bytes:
    key = raw.encode()
    if not key:
        raise _HTTPError(400, f"{where}: empty key")
    if len(key) > KEY_BYTES_MAX:
        raise _HTTPError(413, f"{where}: key of {len(key)} bytes exceeds {KEY_BYTES_MAX}")
    return key


async def _txn_begin(request: _Request) -> Reply:
    body = _json_body(request) if request.body.strip() else {}
    raw = body.get("isolation", "serializable")
    isolation = _ISOLATION.get(raw) if isinstance(raw, str) else None
    if isolation is None:
        allowed = ", ".join(i.name.lower() for i in Isolation)
        raise _HTTPError(400, f"isolation must be one of {allowed}, not {raw!r}")
    timeout_ms = _int_field(body, "timeout_ms", 10_000, 1, _TXN_TIMEOUT_MS_MAX)
    seen_ts = _int_field(body, "seen_ts", 0, 0, (1 << 63) - 1)
    commit = body.get("commit", False)
    if not isinstance(commit, bool):
        raise _HTTPError(400, "'commit' must be true or false")
    steps = _txn_steps(body["ops"]) if "ops" in body else []
    service = request.service
    begun = await service.txn_begin(isolation, timeout_ms / 1000, seen_ts)
    if not steps and not commit:
        return _json(begun)
    txn = begun["txn"]
    try:
        begun["results"] = await service.txn_steps(txn, steps)
        if commit:
            begun.update(await service.txn_commit(txn))
    except BaseException:
        if not commit:
            raise
        with contextlib.suppress(TxnError, ServiceUnavailableError, NotLeaderHereError):
            await service.txn_abort(txn)
        raise
    return _json(begun)


async def _txn_steps_handler(request: _Request) -> Reply:
    body = _json_body(request)
    steps = _txn_steps(body.get("ops"))
    return _json({"results": await request.service.txn_steps(request.param, steps)})


async def _txn_commit(request: _Request) -> Reply:
    """Commit, after running the body's `ops` if it has some (one round trip for the last
    steps and the commit)."""
    body = request.body.strip()
    steps = _txn_steps(_json_body(request).get("ops", [])) if body and body != b"null" else []
    service = request.service
    answer: dict[str, Any] = {}
    if steps:
        answer["results"] = await service.txn_steps(request.param, steps)
    answer.update(await service.txn_commit(request.param))
    return _json(answer)


async def _txn_abort(request: _Request) -> Reply:
    return _json(await request.service.txn_abort(request.param))


async def _openapi(request: _Request) -> Reply:
    return _json(openapi())


_HANDLERS: dict[tuple[str, str], _RequestHandler] = {
    ("GET", "/v1/kv/{key}"): _get,
    ("PUT", "/v1/kv/{key}"): _put,
    ("DELETE", "/v1/kv/{key}"): _delete,
    ("GET", "/v1/kv"): _scan,
    ("POST", "/v1/txn"): _txn_begin,
    ("POST", "/v1/txn/{id}"): _txn_steps_handler,
    ("POST", "/v1/txn/{id}/commit"): _txn_commit,
    ("POST", "/v1/txn/{id}/abort"): _txn_abort,
    ("GET", "/v1/cluster"): _cluster,
    ("POST", "/v1/admin/members"): _add_member,
    ("DELETE", "/v1/admin/members/{id}"): _remove_member,
    ("POST", "/v1/admin/transfer-leader"): _transfer_leader,
    ("GET", "/v1/health"): _health,
    ("GET", "/metrics"): _metrics,
    ("GET", "/v1/openapi.json"): _openapi,
}
# path pattern -> method -> handler, exactly the routes of `ROUTES`
_ROUTE_TABLE: dict[str, dict[str, _RequestHandler]] = {}
for _r in ROUTES:
    _ROUTE_TABLE.setdefault(_r.path, {})[_r.method] = _HANDLERS[(_r.method, _r.path)]


def build_app(service: KVService) -> web.Application:
    """An aiohttp application serving `service` through `dispatch` (same routes, same
    answers as the node's own server, `runtime.http`): for tests and embedding."""

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            reply = _error(413, f"request body larger than {BODY_BYTES_MAX} bytes")
        else:
            reply = await dispatch(service, request.method, request.raw_path, body)
        headers = {"Content-Type": reply.content_type, **dict(reply.headers)}
        return web.Response(status=reply.status, body=reply.body, headers=headers)

    app = web.Application(client_max_size=BODY_BYTES_MAX)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app
