"""The bank on real processes under kill -9: transfers between accounts on several shards
run as serializable transactions from every node while the node leading most groups (a
coordinator of some transactions and a participant leader of others) is killed and
restarted, twice. The total never changes, every account stays readable (no intent is left
behind for longer than the commit deadline), and every node agrees on the balances.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from quorumdb.errors import QuorumError
from quorumdb.kv.client import Client, RetryPolicy
from tests.e2e.harness import Cluster

ACCOUNTS = [f"bank/{i}" for i in range(8)]
WORKERS = 4
RETRY = RetryPolicy(attempts_max=40, backoff_min_s=0.01, backoff_max_s=0.3)


def _transfers(urls: list[str], seed: int, stop: threading.Event, stats: dict[str, int]) -> None:
    rng = random.Random(seed)
    client = Client(urls, retry=RETRY, timeout_s=3.0)
    while not stop.is_set():
        src, dst = rng.sample(ACCOUNTS, 2)
        amount = rng.randrange(1, 20)

        def transfer(tx: Any, src: str = src, dst: str = dst, amount: int = amount) -> None:
            tx.put(src, str(int(tx.get(src) or 0) - amount))
            tx.put(dst, str(int(tx.get(dst) or 0) + amount))

        try:
            client.run_transaction(transfer, attempts_max=10)
            stats["committed"] += 1
        except QuorumError:
            # Unavailable while a node is down, or the commit's outcome unknown: either way
            # the transfer happened wholly or not at all, which the total checks.
            stats["failed"] += 1


def test_bank_total_survives_kill9_of_coordinators_and_participants(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=3, shards=3)
    try:
        c.wait_all_leaders(via=1)
        setup = Client(c.urls, retry=RETRY)
        with setup.transaction() as tx:
            for a in ACCOUNTS:
                tx.put(a, "100")
        stop = threading.Event()
        stats = {"committed": 0, "failed": 0}
        threads = [
            threading.Thread(target=_transfers, args=(c.urls, i, stop, stats))
            for i in range(WORKERS)
        ]
        for t in threads:
            t.start()
        try:
            for _ in range(2):
                time.sleep(1.5)
                victim = c.busiest_leader()
                c.kill9(victim)
                time.sleep(1.0)
                c.restart(victim)
            time.sleep(1.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert stats["committed"] > 20, stats
        c.wait_all_leaders(via=1)
        totals = []
        for node in (1, 2, 3):
            reader = Client([c.url(node)], retry=RETRY)
            with reader.transaction("snapshot") as tx:
                balances = [int(tx.get(a) or 0) for a in ACCOUNTS]
            totals.append(sum(balances))
        assert totals == [800, 800, 800], (totals, stats)
    finally:
        c.stop()
