"""The pieces of the real-process workloads that need no cluster: what a commit's answer means
to the history, and how a bank history is read back for its checker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from quorumdb.check.bank import TransferOutcome
from quorumdb.kv.client import ClientError, SerializationFailureError, UnavailableError
from quorumdb.nemesis.bank_workload import bank_history_from_events, lost_update_suspects
from quorumdb.nemesis.txn_client import TxnOutcome, commit


class _Tx:
    """Stands in for `AsyncTransaction`: its commit raises `error`, or answers."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.steps: tuple[list[Any], ...] = ()

    async def commit(self, *steps: list[Any]) -> int:
        self.steps = steps
        if self.error is not None:
            raise self.error
        return 7


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (None, TxnOutcome.OK),
        (SerializationFailureError("conflict"), TxnOutcome.FAIL),
        (ClientError(404, "no transaction"), TxnOutcome.FAIL),  # the node never had it
        (ClientError(410, "expired"), TxnOutcome.INFO),  # committed, aborted or expired
        (UnavailableError("503 outcome_unknown"), TxnOutcome.INFO),
        (TimeoutError(), TxnOutcome.INFO),
        (ConnectionResetError(), TxnOutcome.INFO),
    ],
)
def test_only_a_definite_answer_makes_a_commit_ok_or_fail(
    error: BaseException | None, outcome: TxnOutcome
) -> None:
    tx = _Tx(error)
    assert asyncio.run(commit(tx, ["put", "k", "v"])) is outcome  # type: ignore[arg-type]
    assert tx.steps == (["put", "k", "v"],)


def _transfer(p: int, src: str, dst: str, reads: tuple[int, int], amount: int) -> list[Any]:
    op = {"from": src, "to": dst, "amount": amount}
    done = {
        **op,
        "reads": {src: reads[0], dst: reads[1]},
        "writes": {src: reads[0] - amount, dst: reads[1] + amount},
    }
    return [(p, "invoke", "transfer", op), (p, "ok", "transfer", done)]


def _events(*steps: tuple[int, str, str, Any]) -> list[dict[str, Any]]:
    return [{"process": p, "type": t, "f": f, "value": v} for p, t, f, v in steps]


def test_a_bank_history_reads_back_as_the_checkers_input() -> None:
    a, b = _transfer(0, "acct/0", "acct/1", (100, 100), 5)
    events = _events(
        a,
        (1, "invoke", "read", None),
        b,
        (1, "ok", "read", {"acct/0": 95, "acct/1": 105}),
        (2, "invoke", "transfer", {"from": "acct/1", "to": "acct/0", "amount": 3}),
        (2, "fail", "transfer", {"from": "acct/1", "to": "acct/0", "amount": 3}),
    )
    events.append({"process": 3, "type": "invoke", "f": "read", "value": None, "final": True})
    events.append(
        {"process": 3, "type": "ok", "f": "read", "value": {"acct/0": 95, "acct/1": 105},
         "final": True}
    )  # fmt: skip
    h = bank_history_from_events(events)
    assert h.accounts == ("acct/0", "acct/1")
    (t,) = h.transfers  # the failed one read nothing: the checker has nothing to judge
    assert t.name == "t0" and t.outcome is TransferOutcome.OK
    assert t.deltas() == {"acct/0": -5, "acct/1": 5}
    assert [x.name for x in h.audits] == ["a1"]
    assert h.final is not None and h.final.name == "a6"
    assert h.events == {"t0": (0, 2), "a1": (1, 3), "a6": (6, 7)}


def test_lost_update_suspects_are_concurrent_transfers_changing_one_balance() -> None:
    a0, a1 = _transfer(0, "acct/0", "acct/1", (100, 100), 5)
    b0, b1 = _transfer(1, "acct/0", "acct/2", (100, 100), 9)
    c0, c1 = _transfer(2, "acct/0", "acct/2", (100, 100), 0)  # changes nothing
    d0, d1 = _transfer(3, "acct/0", "acct/1", (100, 100), 4)  # after the others
    h = bank_history_from_events(_events(a0, b0, c0, a1, b1, c1, d0, d1))
    assert lost_update_suspects(h) == [("t0", "t1", "acct/0", 100)]
