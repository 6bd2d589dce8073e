"""The KV service over HTTP/JSON (aiohttp), with its OpenAPI document generated from the routes.

Keys are path segments (percent-encoded as needed) and values are JSON strings (UTF-8).
Every error is JSON `{"error": "..."}` with a status a client can act on:
400 malformed request, 404 no such key or route, 409 compare-and-set failed, 413 key or
value too large, 421 not the leader (the body and the `Location` header name the leader),
503 no quorum or timed out (retry with the same `client_id`/`seq`: writes apply at most once).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from quorumdb.kv.commands import Outcome, Result
from quorumdb.kv.service import (
    Consistency,
    KVService,
    NotLeaderHereError,
    ServiceUnavailableError,
    ValueRecord,
)

__all__ = ["KEY_BYTES_MAX", "SCAN_LIMIT_MAX", "VALUE_BYTES_MAX", "build_app", "openapi"]

KEY_BYTES_MAX = 4096
VALUE_BYTES_MAX = 1 << 20
SCAN_LIMIT_MAX = 10_000
_BODY_BYTES_MAX = 2 * VALUE_BYTES_MAX

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_SERVICE: web.AppKey[KVService] = web.AppKey("service", KVService)


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
    _Route("GET", "/v1/health", "Liveness of this node"),
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


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where exceptions become HTTP statuses."""
    try:
        return await handler(request)
    except _HTTPError as exc:
        return _error(exc.status, exc.message, **exc.extra)
    except NotLeaderHereError as exc:
        headers = {}
        if exc.leader_url:
            headers["Location"] = exc.leader_url + request.path_qs
        resp = _error(421, str(exc), leader=exc.leader_url)
        resp.headers.update(headers)
        return resp
    except ServiceUnavailableError as exc:
        return _error(503, str(exc))
    except LookupError as exc:
        return _error(404, str(exc).strip("'\""))
    except web.HTTPRequestEntityTooLarge:
        return _error(413, f"request body larger than {_BODY_BYTES_MAX} bytes")
    except web.HTTPNotFound:
        return _error(404, f"no route for {request.method} {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return _error(405, f"method {request.method} not allowed (allowed: {exc.allowed_methods})")


def _key(request: web.Request) -> bytes:
    key = request.match_info["key"].encode()
    if not key:
        raise _HTTPError(400, "empty key")
    if len(key) > KEY_BYTES_MAX:
        raise _HTTPError(413, f"key of {len(key)} bytes exceeds {KEY_BYTES_MAX}")
    return key


def _consistency(request: web.Request) -> Consistency:
    raw = request.query.get("consistency", Consistency.LINEARIZABLE.value)
    try:
        return Consistency(raw)
    except ValueError:
        allowed = ", ".join(c.value for c in Consistency)
        raise _HTTPError(400, f"consistency must be one of {allowed}, not {raw!r}") from None


def _record(r: ValueRecord) -> dict[str, Any]:
    return {
        "key": r.key.decode(errors="replace"),
        "value": r.value.decode(errors="replace"),
        "revision": r.revision,
    }


async def _json_body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _HTTPError(400, f"malformed JSON body: {exc}") from None
    if not isinstance(body, dict):
        raise _HTTPError(400, "JSON body must be an object")
    return body


def _int_field(body: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    v = body.get(name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _HTTPError(400, f"{name!r} must be an integer in [{lo}, {hi}]")
    return v


def _write_result(result: Result) -> web.Response:
    if result.outcome == Outcome.CAS_FAILED:
        raise _HTTPError(409, "revision mismatch", revision=result.revision)
    if result.outcome == Outcome.NOT_FOUND:
        raise _HTTPError(404, "no such key")
    return web.json_response(
        {"revision": result.revision, "previous_revision": result.previous_revision}
    )


async def _get(request: web.Request) -> web.StreamResponse:
    rec = await request.app[_SERVICE].get(_key(request), _consistency(request))
    if rec is None:
        raise _HTTPError(404, "no such key")
    return web.json_response(_record(rec))


async def _put(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    body = await _json_body(request)
    value = body.get("value")
    if not isinstance(value, str):
        raise _HTTPError(400, "'value' must be a string")
    data = value.encode()
    if len(data) > VALUE_BYTES_MAX:
        raise _HTTPError(413, f"value of {len(data)} bytes exceeds {VALUE_BYTES_MAX}")
    expected = _int_field(body, "expected_revision", -1, -1, 1 << 62)
    client = _int_field(body, "client_id", 0, 0, (1 << 63) - 1)
    seq = _int_field(body, "seq", 0, 0, (1 << 63) - 1)
    result = await request.app[_SERVICE].put(
        key, data, expected_revision=expected, client=client, seq=seq
    )
    return _write_result(result)


async def _delete(request: web.Request) -> web.StreamResponse:
    key = _key(request)
    ids: dict[str, Any] = {}
    for name in ("client_id", "seq"):
        if name in request.query:
            try:
                ids[name] = int(request.query[name])
            except ValueError:
                raise _HTTPError(400, f"{name!r} must be an integer") from None
    client = _int_field(ids, "client_id", 0, 0, (1 << 63) - 1)
    seq = _int_field(ids, "seq", 0, 0, (1 << 63) - 1)
    result = await request.app[_SERVICE].delete(key, client=client, seq=seq)
    return _write_result(result)


async def _scan(request: web.Request) -> web.StreamResponse:
    q = request.query
    start = q.get("start", "").encode()
    end_s = q.get("end")
    try:
        limit = int(q.get("limit", "100"))
    except ValueError:
        raise _HTTPError(400, "'limit' must be an integer") from None
    if not 1 <= limit <= SCAN_LIMIT_MAX:
        raise _HTTPError(400, f"'limit' must be in [1, {SCAN_LIMIT_MAX}]")
    recs = await request.app[_SERVICE].scan(
        start, end_s.encode() if end_s is not None else None, limit, _consistency(request)
    )
    return web.json_response({"items": [_record(r) for r in recs], "count": len(recs)})


async def _cluster(request: web.Request) -> web.StreamResponse:
    return web.json_response(request.app[_SERVICE].cluster_status())


async def _add_member(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    node_id = _int_field(body, "id", 0, 1, 1 << 31)
    raft, http = body.get("raft"), body.get("http")
    if not isinstance(raft, str) or not isinstance(http, str):
        raise _HTTPError(400, "'raft' and 'http' must be 'host:port' strings")
    return web.json_response(await request.app[_SERVICE].add_member(node_id, raft, http))


async def _remove_member(request: web.Request) -> web.StreamResponse:
    try:
        node_id = int(request.match_info["id"])
    except ValueError:
        raise _HTTPError(400, "node id must be an integer") from None
    return web.json_response(await request.app[_SERVICE].remove_member(node_id))


async def _transfer_leader(request: web.Request) -> web.StreamResponse:
    body = await _json_body(request)
    to = _int_field(body, "to", 0, 1, 1 << 31)
    group = _int_field(body, "group", -1, -1, 1 << 16)
    result = await request.app[_SERVICE].transfer_leader(to, None if group < 0 else group)
    return web.json_response(result)


async def _health(request: web.Request) -> web.StreamResponse:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.StreamResponse:
    text = request.app[_SERVICE].metrics_text()
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def _openapi(request: web.Request) -> web.StreamResponse:
    return web.json_response(openapi())


_HANDLERS: dict[tuple[str, str], Handler] = {
    ("GET", "/v1/kv/{key}"): _get,
    ("PUT", "/v1/kv/{key}"): _put,
    ("DELETE", "/v1/kv/{key}"): _delete,
    ("GET", "/v1/kv"): _scan,
    ("GET", "/v1/cluster"): _cluster,
    ("POST", "/v1/admin/members"): _add_member,
    ("DELETE", "/v1/admin/members/{id}"): _remove_member,
    ("POST", "/v1/admin/transfer-leader"): _transfer_leader,
    ("GET", "/v1/health"): _health,
    ("GET", "/metrics"): _metrics,
    ("GET", "/v1/openapi.json"): _openapi,
}


def build_app(service: KVService) -> web.Application:
    """The aiohttp application serving `service` (routes exactly as in `ROUTES`)."""
    app = web.Application(middlewares=[_errors], client_max_size=_BODY_BYTES_MAX)
    app[_SERVICE] = service
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _HANDLERS[(r.method, r.path)])
    return app
