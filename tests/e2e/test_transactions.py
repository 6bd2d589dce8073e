"""Transactions on real node processes: each isolation level shows exactly what it should.

The anomalies are provoked deterministically by interleaving two interactive transactions
by hand (the labs' stories: a bank report during a transfer, two orders for the last item,
two doctors going off call, a dirty write with the unsafe engine switch). Keys are spread
over the shards, so the commits are cross-shard (two-phase) as well as one-phase.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from quorumdb.kv.client import (
    AsyncClient,
    Client,
    ClientError,
    RetryPolicy,
    SerializationFailureError,
)
from tests.e2e.harness import Cluster, run_cli

RETRY = RetryPolicy(attempts_max=30, backoff_min_s=0.01, backoff_max_s=0.2)


@pytest.fixture(scope="module")
def txn_cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    c = Cluster(tmp_path_factory.mktemp("txn"), shards=3, extra=("--unsafe-read-uncommitted",))
    try:
        c.wait_all_leaders(via=1)
        yield c
    finally:
        c.stop()


def _client(c: Cluster, node: int = 1) -> Client:
    return Client([c.url(node)], retry=RETRY)  # unseeded: client ids must not repeat


def _post(url: str, body: Any) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_commit_is_atomic_across_shards_and_visible_everywhere(txn_cluster: Cluster) -> None:
    c = _client(txn_cluster)
    keys = [f"atomic-{i}" for i in range(8)]  # several shards
    with c.transaction("serializable") as tx:
        for k in keys:
            tx.put(k, "v1")
        assert tx.get(keys[0]) == "v1", "a transaction reads its own writes"
    for node in (1, 2, 3):
        reader = _client(txn_cluster, node)
        assert [reader.get(k) for k in keys] == [(reader.get(k) or ("", 0)) for k in keys]
        assert all((got := reader.get(k)) is not None and got[0] == "v1" for k in keys)
    # An aborted transaction leaves nothing.
    with pytest.raises(RuntimeError), c.transaction() as tx:
        tx.put(keys[0], "never")
        raise RuntimeError("abort")
    assert c.get(keys[0]) is not None and c.get(keys[0])[0] == "v1"  # type: ignore[index]


def test_read_committed_shows_read_skew_snapshot_does_not(txn_cluster: Cluster) -> None:
    """Bank: A=500, B=500; a transfer of 200 commits between the report's two reads."""
    c = _client(txn_cluster)
    for level, skewed in (("read_committed", True), ("snapshot", False), ("serializable", False)):
        a, b = f"skew-{level}-A", f"skew-{level}-B"
        c.put(a, "500")
        c.put(b, "500")
        report = c.transaction(level)
        tx = report.__enter__()
        first = int(tx.get(a) or 0)
        with c.transaction("serializable") as transfer:
            transfer.put(a, str(int(transfer.get(a) or 0) - 200))
            transfer.put(b, str(int(transfer.get(b) or 0) + 200))
        second = int(tx.get(b) or 0)
        report.__exit__(None, None, None)
        assert (first + second != 1000) == skewed, f"{level}: {first} + {second}"


def test_snapshot_aborts_lost_updates(txn_cluster: Cluster) -> None:
    """Shop: stock 1; two orders each read 1 and write 0: at read committed both commit
    (a lost update); at snapshot and serializable the second fails with 40001."""
    c = _client(txn_cluster)
    for level, lost in (("read_committed", True), ("snapshot", False), ("serializable", False)):
        key = f"stock-{level}"
        c.put(key, "1")
        t1 = c.transaction(level)
        t2 = c.transaction(level)
        x1, x2 = t1.__enter__(), t2.__enter__()
        assert x1.get(key) == "1" and x2.get(key) == "1"
        x1.put(key, "0")
        x2.put(key, "0")
        t1.__exit__(None, None, None)
        if lost:
            t2.__exit__(None, None, None)  # both sold the last item
        else:
            with pytest.raises(SerializationFailureError):
                t2.__exit__(None, None, None)


def test_snapshot_allows_write_skew_serializable_aborts_it(txn_cluster: Cluster) -> None:
    """Doctors on call: each checks that the other is on call and goes off."""
    c = _client(txn_cluster)
    for level, skew in (("snapshot", True), ("serializable", False)):
        alice, bob = f"oncall-{level}-alice", f"oncall-{level}-bob"
        c.put(alice, "on")
        c.put(bob, "on")
        t1, t2 = c.transaction(level), c.transaction(level)
        x1, x2 = t1.__enter__(), t2.__enter__()
        assert x1.get(bob) == "on"
        assert x2.get(alice) == "on"
        x1.put(alice, "off")
        x2.put(bob, "off")
        t1.__exit__(None, None, None)
        if skew:
            t2.__exit__(None, None, None)
            on = [k for k in (alice, bob) if (c.get(k) or ("", 0))[0] == "on"]
            assert on == [], "write skew: nobody is on call"
        else:
            with pytest.raises(SerializationFailureError):
                t2.__exit__(None, None, None)


def test_serializable_aborts_phantoms(txn_cluster: Cluster) -> None:
    """Seat booking: two transactions count the booked seats in a range, then book one."""
    c = _client(txn_cluster)
    t1, t2 = c.transaction("serializable"), c.transaction("serializable")
    x1, x2 = t1.__enter__(), t2.__enter__()
    assert x1.scan("seat/", "seat0") == []
    assert x2.scan("seat/", "seat0") == []
    x1.put("seat/1", "alice")
    x2.put("seat/2", "bob")
    t1.__exit__(None, None, None)
    with pytest.raises(SerializationFailureError):
        t2.__exit__(None, None, None)
    with c.transaction("snapshot") as tx:
        assert [k for k, _ in tx.scan("seat/", "seat0")] == ["seat/1"]


def test_read_uncommitted_allows_a_dirty_write(txn_cluster: Cluster) -> None:
    """Car and invoice: two interleaved writers; with no write locks owner != buyer (G0)."""
    c = _client(txn_cluster)
    t1, t2 = c.transaction("read_uncommitted"), c.transaction("read_uncommitted")
    x1, x2 = t1.__enter__(), t2.__enter__()
    x1.put("car-4521", "alice")
    x2.put("car-4521", "bob")
    x2.put("inv-9901", "bob")
    x1.put("inv-9901", "alice")
    t1.__exit__(None, None, None)
    t2.__exit__(None, None, None)
    owner, buyer = c.get("car-4521"), c.get("inv-9901")
    assert owner is not None and buyer is not None
    assert owner[0] != buyer[0], "read uncommitted lets the writes interleave (dirty write)"


def test_run_transaction_retries_until_the_bank_balances(txn_cluster: Cluster) -> None:
    accounts = [f"acct-{i}" for i in range(4)]
    c = _client(txn_cluster)
    for a in accounts:
        c.put(a, "100")
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        client = _client(txn_cluster, 1 + seed % 3)
        try:
            for n in range(10):
                src, dst = accounts[(seed + n) % 4], accounts[(seed + n + 1) % 4]

                def transfer(tx: Any, src: str = src, dst: str = dst) -> None:
                    tx.put(src, str(int(tx.get(src) or 0) - 7))
                    tx.put(dst, str(int(tx.get(dst) or 0) + 7))

                client.run_transaction(transfer, isolation="serializable", attempts_max=50)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with c.transaction("snapshot") as tx:
        total = sum(int(tx.get(a) or 0) for a in accounts)
    assert total == 400


def test_bad_transaction_requests_get_clear_4xx(txn_cluster: Cluster) -> None:
    url = txn_cluster.url(1)
    assert _post(url + "/v1/txn", {"isolation": "chaos"})[0] == 400
    assert _post(url + "/v1/txn", b"{not json")[0] == 400
    assert _post(url + "/v1/txn", {"timeout_ms": 0})[0] == 400
    # A timestamp far ahead of the clocks would drag every node's clock along: refused.
    status, body = _post(url + "/v1/txn", {"seen_ts": (1 << 63) - 1})
    assert status == 400 and "ahead" in body["error"]
    status, begun = _post(url + "/v1/txn", {"isolation": "snapshot"})
    assert status == 200
    txn = begun["txn"]
    assert _post(f"{url}/v1/txn/{txn}", {"ops": [["frob", "k"]]})[0] == 400
    assert _post(f"{url}/v1/txn/{txn}", {"ops": [["put", "k" * 5000, "v"]]})[0] == 413
    assert _post(f"{url}/v1/txn/{txn}", {"ops": [["get", ""]]})[0] == 400
    assert _post(f"{url}/v1/txn/{txn}/commit", None)[0] == 200
    status, body = _post(f"{url}/v1/txn/{txn}", {"ops": [["get", "k"]]})
    assert status == 410, body
    assert _post(f"{url}/v1/txn/{txn}/commit", None)[0] == 410
    assert _post(f"{url}/v1/txn/1.ffff", {"ops": []})[0] == 404
    assert _post(f"{url}/v1/txn/garbage", {"ops": []})[0] == 404
    # Expired: a transaction past its timeout takes no more operations.
    status, short = _post(url + "/v1/txn", {"timeout_ms": 1})
    time.sleep(0.05)
    assert _post(f"{url}/v1/txn/{short['txn']}", {"ops": [["get", "k"]]})[0] == 410
    # Oversized: too many operations in a request, too many keys in a transaction.
    status, big = _post(url + "/v1/txn", {})
    too_many = [["put", f"big/{i}", "v"] for i in range(10_001)]
    assert _post(f"{url}/v1/txn/{big['txn']}", {"ops": too_many})[0] == 413
    for n in range(3):
        chunk = [["put", f"big/{n}/{i}", "v"] for i in range(4_000)]
        last = _post(f"{url}/v1/txn/{big['txn']}", {"ops": chunk})
    assert last[0] == 413 and "10000 keys" in last[1]["error"]
    # Begun on node 1: node 2 points there.
    status, body = _post(txn_cluster.url(2) + f"/v1/txn/{txn}", {"ops": []})
    assert status == 421 and body["leader"] == url
    # A one-shot transaction.
    status, body = _post(
        url + "/v1/txn", {"ops": [["put", "oneshot", "1"], ["get", "oneshot"]], "commit": True}
    )
    assert status == 200 and body["results"] == [None, "1"] and body["committed"] is True


def test_read_uncommitted_needs_the_engine_switch(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=1, shards=1)
    try:
        c.wait_all_leaders(via=1)
        status, body = _post(c.url(1) + "/v1/txn", {"isolation": "read_uncommitted"})
        assert status == 400 and "unsafe" in body["error"]
        with (
            pytest.raises(ClientError),
            Client([c.url(1)], retry=RETRY).transaction("read_uncommitted"),
        ):
            pass
    finally:
        c.stop()


def test_cli_runs_a_scripted_transaction(txn_cluster: Cluster) -> None:
    endpoints = txn_cluster.url(2).removeprefix("http://")
    proc = run_cli("txn", "--endpoints", endpoints, "put cli/a 1", "put cli/b 2", "scan cli/ cli0")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert lines[2]["result"] == [["cli/a", "1"], ["cli/b", "2"]]
    assert lines[-1] == {"committed": True}
    bad = run_cli("txn", "--endpoints", endpoints, "frob x")
    assert bad.returncode == 2 and "bad operation" in bad.stderr and "Traceback" not in bad.stderr
    wrong = run_cli("txn", "--endpoints", endpoints, "--isolation", "chaos", "get x")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr


def test_a_transaction_sees_every_commit_answered_before_it_began(txn_cluster: Cluster) -> None:
    """Strict serializability: commits on node 1, transactions begun right after on node 2
    and 3 by other clients (no shared timestamps) see each one (commit wait, one host)."""
    writer = _client(txn_cluster, 1)
    readers = [_client(txn_cluster, 2), _client(txn_cluster, 3)]
    for i in range(40):
        with writer.transaction("serializable") as tx:
            tx.put("rt/x", str(i))
            tx.put("rt/y", str(i))
        with readers[i % 2].transaction("snapshot") as tx:
            assert (tx.get("rt/x"), tx.get("rt/y")) == (str(i), str(i)), f"round {i}"


def test_async_client_sends_steps_with_begin_and_commit(txn_cluster: Cluster) -> None:
    async def go() -> tuple[list[Any], list[Any], str | None]:
        async with AsyncClient(txn_cluster.urls, retry=RETRY) as client:
            await client.put("async/a", "1")
            tx = await client.begin("snapshot", ["get", "async/a"], ["get", "async/b"])
            begun = tx.results
            await tx.commit(["put", "async/b", "2"], ["get", "async/b"])
            check = await client.begin("snapshot", ["get", "async/b"])
            await check.commit()
            return begun, tx.results, check.results[0]

    begun, committed, seen = asyncio.run(go())
    assert begun == ["1", None]
    assert committed == [None, "2"]
    assert seen == "2"
