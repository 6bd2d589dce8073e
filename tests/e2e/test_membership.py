"""Add a 4th node and remove an old one while clients write; transfer leadership on demand.

Everything goes through the real CLI (`quorumdb cluster ...`) against real processes, and the
clients' history is checked for linearizability at the end.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from quorumdb.check.history import history_from_events
from quorumdb.check.linearizable import check_linearizable
from quorumdb.kv.client import Client, ClientError, RetryPolicy, UnavailableError
from tests.e2e.harness import Cluster, run_cli, wait_for

RETRY = RetryPolicy(attempts_max=40, backoff_min_s=0.01, backoff_max_s=0.25)


class Writers:
    """Background writers/readers recording a Jepsen history (endpoints refreshed per op)."""

    def __init__(self, cluster: Cluster, n: int = 3) -> None:
        self.cluster = cluster
        self.history: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.next_process = 0
        self.threads = [
            threading.Thread(target=self._run, args=(w,), daemon=True) for w in range(n)
        ]

    def _process(self) -> int:
        with self.lock:
            self.next_process += 1
            return self.next_process

    def _record(self, **event: Any) -> None:
        with self.lock:
            self.history.append({**event, "time": time.monotonic_ns()})

    def _run(self, worker: int) -> None:
        process = self._process()
        n = 0
        while not self.stop.is_set():
            n += 1
            key = f"m{n % 3}"
            write = n % 4 != 0
            value = f"{worker}-{n}" if write else None
            f = "write" if write else "read"
            self._record(process=process, type="invoke", f=f, key=key, value=value)
            try:
                client = Client(
                    self.cluster.urls, retry=RETRY, timeout_s=3.0, seed=worker * 1000 + n
                )
                if write:
                    client.put(key, value or "")
                    result: Any = value
                else:
                    got = client.get(key)
                    result = got[0] if got else None
            except (UnavailableError, ClientError, OSError, KeyError):
                self._record(process=process, type="info", f=f, key=key, value=value)
                process = self._process()
                continue
            self._record(process=process, type="ok", f=f, key=key, value=result)

    def __enter__(self) -> Writers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def ok_writes(self) -> int:
        return sum(1 for e in self.history if e["type"] == "ok" and e["f"] == "write")


def test_add_then_remove_a_node_and_transfer_leadership_while_writing(cluster: Cluster) -> None:
    with Writers(cluster) as w:
        wait_for(lambda: w.ok_writes() > 10, "writes before the change")
        added = run_cli("cluster", "add-node", "--dir", str(cluster.dir))
        assert added.returncode == 0, added.stderr
        assert "node 4 is a voter" in added.stdout
        moved = run_cli("cluster", "transfer-leader", "--dir", str(cluster.dir), "--to", "4")
        assert moved.returncode == 0, moved.stderr
        assert set(cluster.leaders(4).values()) == {4}
        removed = run_cli("cluster", "remove-node", "--dir", str(cluster.dir), "--id", "1")
        assert removed.returncode == 0, removed.stderr
        before = w.ok_writes()
        wait_for(lambda: w.ok_writes() > before + 10, "writes after the change")
    status = cluster.status(4)
    for g in status["groups"]:
        assert sorted(g["voters"]) == [2, 3, 4], g
    assert sorted(m["id"] for m in status["members"]) == [2, 3, 4]
    result = check_linearizable(history_from_events(w.history))
    assert result.ok, str(result.counterexample)
