"""The Python clients against real HTTP servers on loopback (the API layer over a memory service).

Leader discovery through 421 answers, retries after 503 with the same request id (so a retried
write is applied once), and the blocking and asyncio clients behaving alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from aiohttp import web

from quorumdb.kv.api import build_app
from quorumdb.kv.client import AsyncClient, Client, RetryPolicy, UnavailableError
from quorumdb.kv.service import ServiceUnavailableError
from tests.kv.test_api import MemoryService

FAST = RetryPolicy(attempts_max=6, backoff_min_s=0.001, backoff_max_s=0.01)


class FlakyService(MemoryService):
    """Fails the first `failures` writes *after* applying them (a timeout after commit)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def put(self, key, value, *, expected_revision, client, seq):  # type: ignore[no-untyped-def]
        result = await super().put(
            key, value, expected_revision=expected_revision, client=client, seq=seq
        )
        if self.failures:
            self.failures -= 1
            raise ServiceUnavailableError("timed out waiting for commit")
        return result


@contextmanager
def serving(*services: MemoryService) -> Iterator[list[str]]:
    """Run one HTTP server per service on loopback in a background event loop thread."""
    loop = asyncio.new_event_loop()
    urls: list[str] = []
    runners: list[web.AppRunner] = []

    async def start() -> None:
        for svc in services:
            runner = web.AppRunner(build_app(svc))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            urls.append(f"http://127.0.0.1:{port}")
            runners.append(runner)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield urls
    finally:

        async def stop() -> None:
            for r in runners:
                await r.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_blocking_client_follows_the_leader_hint() -> None:
    leader, follower = MemoryService(), MemoryService()
    with serving(leader, follower) as (leader_url, follower_url):
        follower.leader_url = leader_url
        c = Client([follower_url], retry=FAST, seed=1)
        rev = c.put("k", "v")
        assert rev is not None
        assert c.get("k") == ("v", rev)
        assert leader.sm.get(b"k") == (b"v", rev)
        assert len(follower.sm) == 0


def test_retried_write_is_applied_once() -> None:
    svc = FlakyService(failures=2)
    with serving(svc) as (url,):
        c = Client([url], retry=FAST, seed=2)
        rev = c.put("counter", "1")
        # Three attempts reached the state machine; the session table applied one.
        assert svc.index == 3
        assert svc.sm.get(b"counter") == (b"1", rev)
        assert rev == 1


def test_clients_built_with_one_seed_do_not_share_sessions() -> None:
    """The membership e2e test's lost writes: it seeds a new client per operation with
    worker * 1000 + n, so worker 1's 13th and worker 0's 1013th clients had one seed. Ids
    drawn from the seed were equal, and the second client's first write (seq 1, like the
    first's) was answered from the first's session: acknowledged, never applied."""
    svc = MemoryService()
    with serving(svc) as (url,):
        first = Client([url], retry=FAST, seed=1013)
        rev = first.put("m1", "1-13")
        second = Client([url], retry=FAST, seed=1013)
        rev2 = second.put("m2", "0-1013")
        assert rev2 != rev
        assert svc.sm.get(b"m2") == (b"0-1013", rev2)
        assert Client([url], seed=7).get("m2") == ("0-1013", rev2)


def test_async_clients_built_with_one_seed_do_not_share_sessions() -> None:
    svc = MemoryService()
    with serving(svc) as (url,):

        async def main() -> None:
            for value in ("a", "b"):
                async with AsyncClient([url], retry=FAST, seed=5) as c:
                    await c.put(value, value)

        asyncio.run(main())
        assert svc.sm.get(b"a") is not None and svc.sm.get(b"b") is not None


def test_cas_and_delete_and_scan() -> None:
    svc = MemoryService()
    with serving(svc) as (url,):
        c = Client([url], retry=FAST, seed=3)
        rev = c.put("a", "1", expected_revision=0)
        assert rev is not None
        assert c.put("a", "2", expected_revision=0) is None
        assert c.put("a", "2", expected_revision=rev) is not None
        c.put("b", "x")
        assert [k for k, _, _ in c.scan()] == ["a", "b"]
        assert c.delete("a") is True
        assert c.delete("a") is False
        assert c.get("a") is None


def test_gives_up_with_a_clear_error_when_nobody_answers() -> None:
    c = Client(["http://127.0.0.1:9"], retry=FAST, seed=4, timeout_s=0.5)
    try:
        c.put("k", "v")
    except UnavailableError as exc:
        assert "gave up after 6 attempts" in str(exc)
    else:
        raise AssertionError("expected UnavailableError")


def test_async_client_matches_the_blocking_one() -> None:
    leader, follower = FlakyService(failures=1), MemoryService()
    with serving(leader, follower) as (leader_url, follower_url):
        follower.leader_url = leader_url

        async def main() -> None:
            async with AsyncClient([follower_url], retry=FAST, seed=5) as c:
                rev = await c.put("k", "v")
                assert rev is not None
                assert await c.get("k") == ("v", rev)
                assert await c.put("k", "w", expected_revision=rev + 100) is None
                assert await c.delete("k") is True
                assert await c.get("k") is None

        asyncio.run(main())
        assert leader.index == 4  # put (+1 retry), failed cas, delete
