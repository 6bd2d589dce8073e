"""Transactions through `quorumdb.AsyncClient` for the transactional workloads of `quorumdb test`.

The bank and list-append workloads share this: one client per worker (its endpoints rotated
so each worker starts at a different node: coordinators on every node get work), short
per-request timeouts and a small retry budget so an operation under a fault ends in a few
seconds, and the one place that says what a commit's answer means to a Jepsen history:

- 200: ``ok``, it committed;
- 409 SQLSTATE 40001 (a serialization failure), 404 (the node does not know the
  transaction: it restarted, or never began it), 400: ``fail``, it certainly did not commit;
- anything else (a 503, with or without ``outcome_unknown``, a timeout, a refused
  connection, a 410 "finished or expired" whose cause is unknown): ``info``, it may have.

A commit is never retried blindly (`AsyncTransaction.commit` sends it once), so an ``ok`` or
``fail`` is about the one attempt the history records.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from quorumdb.errors import QuorumError
from quorumdb.kv.client import (
    AsyncClient,
    AsyncTransaction,
    ClientError,
    RetryPolicy,
    SerializationFailureError,
)

__all__ = [
    "OP_TIMEOUT_S",
    "TxnOutcome",
    "abort_quietly",
    "commit",
    "retry_until_committed",
    "txn_client",
]

OP_TIMEOUT_S = 4.0
"""The most one request of a transaction (retries included) may take before it is given up."""

_RETRY = RetryPolicy(attempts_max=4, backoff_min_s=0.01, backoff_max_s=0.2)
_REQUEST_TIMEOUT_S = 1.0
_DEFINITE_FAILURES = frozenset({400, 404})  # the commit certainly did not apply


class TxnOutcome(StrEnum):
    """A transaction's end, as the Jepsen history records it."""

    OK = "ok"
    FAIL = "fail"
    INFO = "info"


def txn_client(urls: list[str], worker: int, seed: int) -> AsyncClient:
    """A client for worker `worker`, starting at node `worker mod n` (then leader discovery)."""
    i = worker % len(urls)
    return AsyncClient(
        urls[i:] + urls[:i], retry=_RETRY, timeout_s=_REQUEST_TIMEOUT_S, seed=seed + worker
    )


async def commit(tx: AsyncTransaction, *steps: list[Any]) -> TxnOutcome:
    """Run `steps` and commit in one request; what the answer says about the commit."""
    try:
        await asyncio.wait_for(tx.commit(*steps), OP_TIMEOUT_S)
    except SerializationFailureError:
        return TxnOutcome.FAIL
    except ClientError as exc:
        return TxnOutcome.FAIL if exc.status in _DEFINITE_FAILURES else TxnOutcome.INFO
    except (QuorumError, OSError, TimeoutError):
        return TxnOutcome.INFO
    return TxnOutcome.OK


async def abort_quietly(tx: AsyncTransaction) -> None:
    """Abort a transaction that will not commit (nothing was sent to commit it); if the
    node cannot be told, its transaction expires on its own."""
    with contextlib.suppress(QuorumError, OSError, TimeoutError):
        await asyncio.wait_for(tx.abort(), _REQUEST_TIMEOUT_S)


async def retry_until_committed(
    attempt: Callable[[int], Awaitable[TxnOutcome]],
    new_process: Callable[[], int],
    *,
    deadline: float,
    rng: random.Random,
) -> bool:
    """A final read: `attempt(process)` until one commits or `deadline` (monotonic) passes;
    after an `info` the client goes on as a new process, as Jepsen requires."""
    process = new_process()
    while time.monotonic() < deadline:
        outcome = await attempt(process)
        if outcome is TxnOutcome.OK:
            return True
        if outcome is TxnOutcome.INFO:
            process = new_process()
        await asyncio.sleep(rng.uniform(0.05, 0.5))
    return False
