"""`quorumdb.Client` / `AsyncClient`: the KV service from Python, with leader discovery and retries.

Every write carries (client_id, seq) from a session it holds while in flight
(`kv.sessions.SessionPool`: concurrent writes of one client object use different ids), so a
write retried after a timeout or a lost connection is applied at most once (the state
machine's session table answers the retry with the first result).
Client ids are drawn from the OS's randomness whatever the `seed` (which only makes the
back-off jitter reproducible): ids shared by two clients would make one's writes look like
retries of the other's. Retries use exponential back-off with full jitter; a 421 answer moves
straight to the leader it names, without waiting. Both clients share the request logic
(`_Plan`) so they cannot drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from quorumdb.errors import QuorumError
from quorumdb.kv.sessions import SessionPool
from quorumdb.kv.txn_errors import SerializationFailureError

__all__ = [
    "AsyncClient",
    "AsyncTransaction",
    "Client",
    "ClientError",
    "RetryPolicy",
    "SerializationFailureError",
    "Transaction",
    "UnavailableError",
]


_T = TypeVar("_T")


class ClientError(QuorumError):
    """The server refused the request (a 4xx other than 404/409/421): do not retry."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


class UnavailableError(QuorumError):
    """No node answered successfully within the retry budget."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    attempts_max: int = 10
    backoff_min_s: float = 0.02
    backoff_max_s: float = 1.0

    def delays(self, rng: random.Random) -> Iterator[float]:
        """Full-jitter exponential back-off (AWS architecture blog): uniform in [0, cap]."""
        cap = self.backoff_min_s
        for _ in range(self.attempts_max - 1):
            yield rng.uniform(0, cap)
            cap = min(cap * 2, self.backoff_max_s)


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    body: dict[str, Any]
    location: str | None


class _Plan:
    """Endpoint choice and the meaning of each answer, shared by both clients."""

    def __init__(self, endpoints: list[str], seed: int | None) -> None:
        if not endpoints:
            raise ValueError("need at least one endpoint")
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.rng = random.Random(seed)
        self.current = self.endpoints[0]
        # Client ids come from the OS, never from `seed`: the state machine answers a write
        # whose (client id, seq) it has seen with that earlier write's result, without
        # applying it. Two clients built with one seed (a script run twice, a test seeding
        # each client with a counter) would draw the same ids, and their first writes, all
        # seq 1, would be acknowledged but lost. The seed only makes back-off reproducible.
        self.sessions = SessionPool(random.SystemRandom())

    def rotate(self) -> None:
        i = self.endpoints.index(self.current) if self.current in self.endpoints else -1
        self.current = self.endpoints[(i + 1) % len(self.endpoints)]

    def judge(self, url: str, answer: _Answer | None, error: Exception | None) -> str | None:
        """Decide what an attempt means: None to return `answer`, "" to retry at once (a
        leader hint), or the reason to retry after a back-off. Raises ClientError."""
        if answer is None:
            self.rotate()
            return f"{url}: {error!r}"
        if answer.status == 421:
            if self.follow(answer):
                return ""
            return f"{url}: not leader, leader unknown"
        if answer.status in (502, 503, 504):
            self.rotate()
            return f"{url}: HTTP {answer.status} {answer.body.get('error', '')}"
        _raise_for(answer)
        return None

    def follow(self, answer: _Answer) -> bool:
        """Handle a 421: move to the named leader. True if we know where to go."""
        leader = answer.body.get("leader")
        if isinstance(leader, str) and leader:
            self.current = leader.rstrip("/")
            return True
        self.rotate()
        return False


def _raise_for(answer: _Answer) -> None:
    if answer.status >= 400 and answer.status not in (404, 409):
        raise ClientError(answer.status, str(answer.body.get("error", "")))


def _txn_answer(answer: _Answer) -> dict[str, Any]:
    """A transaction request's answer body, or its error raised (409 40001: retryable)."""
    if answer.status == 200:
        return answer.body
    message = str(answer.body.get("error", ""))
    if answer.status == 409 and answer.body.get("code") == SerializationFailureError.sqlstate:
        raise SerializationFailureError(message)
    raise ClientError(answer.status, message)


def _txn_begin_body(isolation: str, timeout_s: float, seen_ts: int) -> dict[str, Any]:
    return {"isolation": isolation, "timeout_ms": int(timeout_s * 1000), "seen_ts": seen_ts}


class _TxnSteps:
    """The request bodies of a transaction's operations (shared by both clients)."""

    @staticmethod
    def get(key: str) -> list[Any]:
        return ["get", key]

    @staticmethod
    def put(key: str, value: str) -> list[Any]:
        return ["put", key, value]

    @staticmethod
    def delete(key: str) -> list[Any]:
        return ["delete", key]

    @staticmethod
    def scan(start: str, end: str | None, limit: int) -> list[Any]:
        return ["scan", start, end, limit]


class Transaction:
    """An interactive transaction (from `Client.transaction`): reads answer at once, writes
    are buffered by the node until `commit`, which makes all of them visible or none."""

    def __init__(self, client: Client, txn_id: str) -> None:
        self._client = client
        self.id = txn_id
        self.commit_ts = 0

    def _steps(self, *steps: list[Any]) -> list[Any]:
        answer = self._client._send(_Request("POST", f"/v1/txn/{self.id}", {"ops": list(steps)}))
        return list(_txn_answer(answer)["results"])

    def get(self, key: str) -> str | None:
        got = self._steps(_TxnSteps.get(key))[0]
        return None if got is None else str(got)

    def put(self, key: str, value: str) -> None:
        self._steps(_TxnSteps.put(key, value))

    def delete(self, key: str) -> None:
        self._steps(_TxnSteps.delete(key))

    def scan(
        self, start: str = "", end: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        rows = self._steps(_TxnSteps.scan(start, end, limit))[0]
        return [(str(k), str(v)) for k, v in rows]

    def commit(self) -> int:
        """Commit; raises SerializationFailureError if it had to abort (retry it whole)."""
        answer = self._client._send(
            _Request("POST", f"/v1/txn/{self.id}/commit", None), retry=False
        )
        self.commit_ts = int(_txn_answer(answer)["commit_ts"])
        self._client._seen(self.commit_ts)
        return self.commit_ts

    def abort(self) -> None:
        self._client._send(_Request("POST", f"/v1/txn/{self.id}/abort", None), retry=False)


class AsyncClient:
    """asyncio client (aiohttp). Use `async with AsyncClient([...]) as c:`."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        self._plan = _Plan(endpoints, seed)
        self._retry = retry or RetryPolicy()
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._seen_ts = 0

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _send(self, req: _Request, *, retry: bool = True) -> _Answer:
        plan = self._plan
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        delays = self._retry.delays(plan.rng) if retry else iter(())
        while True:
            url = plan.current + req.path
            answer: _Answer | None = None
            error: Exception | None = None
            try:
                async with self._session.request(
                    req.method, url, json=req.body, allow_redirects=False
                ) as resp:
                    body = await resp.json(content_type=None)
                    answer = _Answer(resp.status, body if isinstance(body, dict) else {}, None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                error = exc
            why = plan.judge(url, answer, error)
            if why is None and answer is not None:
                return answer
            if why == "":
                continue
            delay = next(delays, None)
            if delay is None:
                raise UnavailableError(f"gave up after {self._retry.attempts_max} attempts: {why}")
            await asyncio.sleep(delay)

    async def put(
        self, key: str, value: str, *, expected_revision: int | None = None
    ) -> int | None:
        """Write; returns the new revision, or None when `expected_revision` did not match."""
        with self._plan.sessions.lease() as session:
            body = _put_body(session, value, expected_revision)
            answer = await self._send(_Request("PUT", _kv_path(key), body))
        return None if answer.status == 409 else int(answer.body["revision"])

    async def get(self, key: str, *, consistency: str = "linearizable") -> tuple[str, int] | None:
        answer = await self._send(_Request("GET", _kv_path(key, consistency=consistency), None))
        if answer.status == 404:
            return None
        return str(answer.body["value"]), int(answer.body["revision"])

    async def delete(self, key: str) -> bool:
        with self._plan.sessions.lease() as (client_id, seq):
            path = _kv_path(key, client_id=client_id, seq=seq)
            answer = await self._send(_Request("DELETE", path, None))
        return answer.status == 200

    async def scan(
        self, start: str = "", end: str | None = None, limit: int = 100
    ) -> list[tuple[str, str, int]]:
        answer = await self._send(_Request("GET", _scan_path(start, end, limit), None))
        return [(i["key"], i["value"], i["revision"]) for i in answer.body["items"]]

    async def cluster(self) -> dict[str, Any]:
        return (await self._send(_Request("GET", "/v1/cluster", None))).body

    async def begin(
        self, isolation: str = "serializable", *steps: list[Any], timeout_s: float = 10.0
    ) -> AsyncTransaction:
        """Begin an interactive transaction (commit or abort it; see `run_transaction`),
        running `steps` (["get", k], ...) in the same request: their answers are in the
        transaction's `results`."""
        body = _txn_begin_body(isolation, timeout_s, self._seen_ts)
        if steps:
            body["ops"] = list(steps)
        begun = _txn_answer(await self._send(_Request("POST", "/v1/txn", body)))
        self._seen_ts = max(self._seen_ts, int(begun["read_ts"]))
        tx = AsyncTransaction(self, str(begun["txn"]))
        tx.results = list(begun.get("results", []))
        return tx

    async def run_transaction(
        self,
        fn: Callable[[AsyncTransaction], Awaitable[_T]],
        *,
        isolation: str = "serializable",
        attempts_max: int = 20,
    ) -> _T:
        """Run `fn` in a transaction and commit, again on a serialization failure (back-off
        with full jitter), at most `attempts_max` times."""
        delays = RetryPolicy(attempts_max=attempts_max, backoff_min_s=0.005).delays(self._plan.rng)
        while True:
            tx = await self.begin(isolation)
            try:
                out = await fn(tx)
                await tx.commit()
                return out
            except SerializationFailureError:
                delay = next(delays, None)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
            except BaseException:
                with contextlib.suppress(QuorumError):
                    await tx.abort()
                raise


class AsyncTransaction:
    """`Transaction` for `AsyncClient`."""

    def __init__(self, client: AsyncClient, txn_id: str) -> None:
        self._client = client
        self.id = txn_id
        self.commit_ts = 0
        self.results: list[Any] = []  # the answers of the steps sent with begin or commit

    async def steps(self, *steps: list[Any]) -> list[Any]:
        """Several operations in one request (["get", k], ["put", k, v], ...)."""
        req = _Request("POST", f"/v1/txn/{self.id}", {"ops": list(steps)})
        return list(_txn_answer(await self._client._send(req))["results"])

    async def get(self, key: str) -> str | None:
        got = (await self.steps(_TxnSteps.get(key)))[0]
        return None if got is None else str(got)

    async def put(self, key: str, value: str) -> None:
        await self.steps(_TxnSteps.put(key, value))

    async def delete(self, key: str) -> None:
        await self.steps(_TxnSteps.delete(key))

    async def scan(
        self, start: str = "", end: str | None = None, limit: int = 100
    ) -> list[tuple[str, str]]:
        rows = (await self.steps(_TxnSteps.scan(start, end, limit)))[0]
        return [(str(k), str(v)) for k, v in rows]

    async def commit(self, *steps: list[Any]) -> int:
        """Run `steps` (their answers in `results`), then commit, in one request."""
        body = {"ops": list(steps)} if steps else None
        req = _Request("POST", f"/v1/txn/{self.id}/commit", body)
        answer = _txn_answer(await self._client._send(req, retry=False))
        if steps:
            self.results = list(answer.get("results", []))
        self.commit_ts = int(answer["commit_ts"])
        self._client._seen_ts = max(self._client._seen_ts, self.commit_ts)
        return self.commit_ts

    async def abort(self) -> None:
        await self._client._send(_Request("POST", f"/v1/txn/{self.id}/abort", None), retry=False)


class Client:
    """Blocking client (standard library HTTP); same semantics as `AsyncClient`."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        timeout_s: float = 5.0,
        retry: RetryPolicy | None = None,
        seed: int | None = None,
    ) -> None:
        self._plan = _Plan(endpoints, seed)
        self._retry = retry or RetryPolicy()
        self._timeout_s = timeout_s
        self._seen_ts = 0

    def _once(self, req: _Request) -> _Answer:
        u = urllib.parse.urlsplit(self._plan.current)
        conn = http.client.HTTPConnection(
            u.hostname or "127.0.0.1", u.port, timeout=self._timeout_s
        )
        try:
            payload = json.dumps(req.body).encode() if req.body is not None else None
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(req.method, req.path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            body = json.loads(raw) if raw else {}
            return _Answer(resp.status, body if isinstance(body, dict) else {}, None)
        finally:
            conn.close()

    def _send(self, req: _Request, *, retry: bool = True) -> _Answer:
        """Send until answered (`retry=False`: an unavailable node is an error at once,
        for requests that must not be repeated blindly, like a commit)."""
        plan = self._plan
        delays = self._retry.delays(plan.rng) if retry else iter(())
        while True:
            url = plan.current + req.path
            answer: _Answer | None = None
            error: Exception | None = None
            try:
                answer = self._once(req)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                error = exc
            why = plan.judge(url, answer, error)
            if why is None and answer is not None:
                return answer
            if why == "":
                continue
            delay = next(delays, None)
            if delay is None:
                raise UnavailableError(f"gave up after {self._retry.attempts_max} attempts: {why}")
            time.sleep(delay)

    def put(self, key: str, value: str, *, expected_revision: int | None = None) -> int | None:
        with self._plan.sessions.lease() as session:
            body = _put_body(session, value, expected_revision)
            answer = self._send(_Request("PUT", _kv_path(key), body))
        return None if answer.status == 409 else int(answer.body["revision"])

    def get(self, key: str, *, consistency: str = "linearizable") -> tuple[str, int] | None:
        answer = self._send(_Request("GET", _kv_path(key, consistency=consistency), None))
        if answer.status == 404:
            return None
        return str(answer.body["value"]), int(answer.body["revision"])

    def delete(self, key: str) -> bool:
        with self._plan.sessions.lease() as (client_id, seq):
            path = _kv_path(key, client_id=client_id, seq=seq)
            return self._send(_Request("DELETE", path, None)).status == 200

    def scan(
        self, start: str = "", end: str | None = None, limit: int = 100
    ) -> list[tuple[str, str, int]]:
        answer = self._send(_Request("GET", _scan_path(start, end, limit), None))
        return [(i["key"], i["value"], i["revision"]) for i in answer.body["items"]]

    def cluster(self) -> dict[str, Any]:
        return self._send(_Request("GET", "/v1/cluster", None)).body

    # -- transactions ----------------------------------------------------------------------

    def _seen(self, ts: int) -> None:
        self._seen_ts = max(self._seen_ts, ts)

    @contextlib.contextmanager
    def transaction(
        self, isolation: str = "serializable", *, timeout_s: float = 10.0
    ) -> Iterator[Transaction]:
        """`with client.transaction() as tx:` commits when the block ends, aborts if it
        raises. Its snapshot includes everything this client saw committed."""
        body = _txn_begin_body(isolation, timeout_s, self._seen_ts)
        begun = _txn_answer(self._send(_Request("POST", "/v1/txn", body)))
        self._seen(int(begun["read_ts"]))
        tx = Transaction(self, str(begun["txn"]))
        try:
            yield tx
        except BaseException:
            with contextlib.suppress(QuorumError):
                tx.abort()
            raise
        tx.commit()

    def run_transaction(
        self,
        fn: Callable[[Transaction], _T],
        *,
        isolation: str = "serializable",
        attempts_max: int = 20,
    ) -> _T:
        """Run `fn` in a transaction, again on a serialization failure (back-off with full
        jitter), at most `attempts_max` times; returns what `fn` returned."""
        delays = RetryPolicy(attempts_max=attempts_max, backoff_min_s=0.005).delays(self._plan.rng)
        while True:
            try:
                with self.transaction(isolation) as tx:
                    return fn(tx)
            except SerializationFailureError:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)


def _put_body(
    session: tuple[int, int], value: str, expected_revision: int | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"value": value, "client_id": session[0], "seq": session[1]}
    if expected_revision is not None:
        body["expected_revision"] = expected_revision
    return body


def _kv_path(key: str, **query: object) -> str:
    path = "/v1/kv/" + urllib.parse.quote(key, safe="")
    if query:
        path += "?" + urllib.parse.urlencode(query)
    return path


def _scan_path(start: str, end: str | None, limit: int) -> str:
    q: dict[str, object] = {"start": start, "limit": limit}
    if end is not None:
        q["end"] = end
    return "/v1/kv?" + urllib.parse.urlencode(q)
