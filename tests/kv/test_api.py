"""The HTTP layer alone, against an in-memory service that applies commands like a replica."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from quorumdb.kv.api import (
    BODY_BYTES_MAX,
    KEY_BYTES_MAX,
    ROUTES,
    VALUE_BYTES_MAX,
    build_app,
    dispatch,
    openapi,
)
from quorumdb.kv.commands import Command, CommandKind, Result
from quorumdb.kv.service import Consistency, NotLeaderHereError, ValueRecord
from quorumdb.kv.state_machine import KVStateMachine
from quorumdb.runtime.http import HttpServer


class MemoryService:
    def __init__(self) -> None:
        self.sm = KVStateMachine()
        self.index = 0
        self.leader_url: str | None = None
        self.consistency_seen: list[Consistency] = []
        self.health_doc: dict[str, Any] = {"status": "ok"}

    def _apply(self, cmd: Command) -> Result:
        if self.leader_url is not None:
            raise NotLeaderHereError(self.leader_url)
        self.index += 1
        r = self.sm.apply(self.index, cmd)
        assert r is not None
        return r

    async def put(
        self, key: bytes, value: bytes, *, expected_revision: int, client: int, seq: int
    ) -> Result:
        kind = CommandKind.CAS if expected_revision >= 0 else CommandKind.PUT
        return self._apply(
            Command(
                kind=kind,
                key=key,
                value=value,
                expected_revision=expected_revision,
                client=client,
                seq=seq,
            )
        )

    async def delete(self, key: bytes, *, client: int, seq: int) -> Result:
        return self._apply(Command(kind=CommandKind.DELETE, key=key, client=client, seq=seq))

    async def get(self, key: bytes, consistency: Consistency) -> ValueRecord | None:
        self.consistency_seen.append(consistency)
        got = self.sm.get(key)
        return None if got is None else ValueRecord(key=key, value=got[0], revision=got[1])

    async def scan(
        self, start: bytes, end: bytes | None, limit: int, consistency: Consistency
    ) -> list[ValueRecord]:
        return [
            ValueRecord(key=k, value=v, revision=r) for k, v, r in self.sm.scan(start, end, limit)
        ]

    def cluster_status(self) -> dict[str, Any]:
        return {"nodes": [1]}

    def health(self) -> dict[str, Any]:
        return self.health_doc

    def metrics_text(self) -> str:
        return "quorumdb_up 1\n"


class _LeanClient:
    """TestClient's request methods against the node's own server (`runtime.http`)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self._session = session
        self._base = base

    def _req(self, method: str, path: str, **kw: Any) -> Any:
        return self._session.request(method, self._base + path, **kw)

    def get(self, path: str, **kw: Any) -> Any:
        return self._req("GET", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self._req("PUT", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self._req("POST", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self._req("DELETE", path, **kw)


def _run(fn: Callable[[Any, MemoryService], Awaitable[None]]) -> None:
    """Run `fn` against both servers of `dispatch`: the aiohttp app and `runtime.http`."""

    async def main() -> None:
        svc = MemoryService()
        async with TestClient(TestServer(build_app(svc))) as client:
            await fn(client, svc)
        svc = MemoryService()
        server = HttpServer(functools.partial(dispatch, svc), body_bytes_max=BODY_BYTES_MAX)
        await server.start("127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession() as session:
                await fn(_LeanClient(session, f"http://127.0.0.1:{server.port}"), svc)
        finally:
            await server.stop()

    asyncio.run(main())


def test_put_get_delete_round_trip() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        r = await c.put("/v1/kv/fruit", json={"value": "apple"})
        assert r.status == 200
        rev = (await r.json())["revision"]
        r = await c.get("/v1/kv/fruit")
        assert await r.json() == {"key": "fruit", "value": "apple", "revision": rev}
        assert (await c.delete("/v1/kv/fruit")).status == 200
        r = await c.get("/v1/kv/fruit")
        assert r.status == 404
        assert "no such key" in (await r.json())["error"]

    _run(body)


def test_cas_by_revision() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        r = await c.put("/v1/kv/k", json={"value": "a", "expected_revision": 0})
        assert r.status == 200
        rev = (await r.json())["revision"]
        r = await c.put("/v1/kv/k", json={"value": "b", "expected_revision": 0})
        assert r.status == 409
        assert (await r.json())["revision"] == rev
        r = await c.put("/v1/kv/k", json={"value": "b", "expected_revision": rev})
        assert r.status == 200

    _run(body)


def test_scan_in_key_order_with_limit() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        for k in ("b", "a", "d", "c"):
            await c.put(f"/v1/kv/{k}", json={"value": k.upper()})
        r = await c.get("/v1/kv", params={"start": "b", "end": "d", "limit": "10"})
        items = (await r.json())["items"]
        assert [i["key"] for i in items] == ["b", "c"]
        r = await c.get("/v1/kv", params={"limit": "2"})
        assert (await r.json())["count"] == 2

    _run(body)


def test_bad_input_gets_a_clear_4xx() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        cases = [
            (await c.put("/v1/kv/k", data=b"{not json"), 400, "malformed JSON"),
            (await c.put("/v1/kv/k", json=["x"]), 400, "object"),
            (await c.put("/v1/kv/k", json={"value": 3}), 400, "'value'"),
            (await c.put("/v1/kv/k", json={"value": "v", "seq": "x"}), 400, "'seq'"),
            (await c.put("/v1/kv/" + "k" * (KEY_BYTES_MAX + 1), json={"value": "v"}), 413, "key"),
            (
                await c.put("/v1/kv/k", json={"value": "v" * (VALUE_BYTES_MAX + 1)}),
                413,
                "value",
            ),
            (await c.get("/v1/kv/k", params={"consistency": "eventual"}), 400, "consistency"),
            (await c.get("/v1/kv", params={"limit": "0"}), 400, "limit"),
            (await c.get("/v1/nope"), 404, "no route"),
            (await c.post("/v1/kv/k"), 405, "not allowed"),
        ]
        for resp, status, fragment in cases:
            assert resp.status == status, (status, await resp.text())
            assert fragment in (await resp.json())["error"]
        # Nothing was stored by any of the rejected writes.
        assert len(svc.sm) == 0

    _run(body)


def test_follower_answers_421_with_the_leader() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        svc.leader_url = "http://127.0.0.1:7001"
        r = await c.put("/v1/kv/k", json={"value": "v"}, allow_redirects=False)
        assert r.status == 421
        assert (await r.json())["leader"] == "http://127.0.0.1:7001"
        assert r.headers["Location"] == "http://127.0.0.1:7001/v1/kv/k"

    _run(body)


def test_consistency_is_passed_through() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        for mode in ("stale", "lease", "linearizable"):
            await c.get("/v1/kv/k", params={"consistency": mode})
        await c.get("/v1/kv/k")
        assert [m.value for m in svc.consistency_seen] == [
            "stale",
            "lease",
            "linearizable",
            "linearizable",
        ]

    _run(body)


def test_health_answers_503_when_the_service_is_not_ok() -> None:
    async def body(c: Any, svc: MemoryService) -> None:
        r = await c.get("/v1/health")
        assert (r.status, await r.json()) == (200, {"status": "ok"})
        svc.health_doc = {"status": "stopped", "error": "driver stopped: E: boom"}
        r = await c.get("/v1/health")
        assert (r.status, await r.json()) == (503, svc.health_doc)

    _run(body)


def test_openapi_lists_every_route() -> None:
    doc = openapi()
    listed = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert listed == {(r.method, r.path) for r in ROUTES}

    async def body(c: Any, svc: MemoryService) -> None:
        r = await c.get("/v1/openapi.json")
        assert json.loads(await r.text()) == doc
        r = await c.get("/metrics")
        assert "quorumdb_up 1" in await r.text()

    _run(body)
