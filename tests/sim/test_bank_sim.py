"""Bank transfers in the simulation: serializable transactions on every node's real coordinator,
snapshot audits, and `check.bank` judging that no money appears or vanishes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from quorumdb.check.bank import Audit, Transfer, TransferOutcome, check_bank
from quorumdb.kv.transactions import Transaction, TxnCoordinator
from quorumdb.sim.options import SimOptions, swarm_options
from quorumdb.sim.simulator import run

# Seeds whose fault mix lets transfers commit in the fault phase (many seeds spend it
# waiting out partitions and crashes: safety is checked there too, but not shown here).
SEEDS = (9, 12)


def _bank(seed: int) -> SimOptions:
    return replace(swarm_options(seed), bank=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_transfers_conserve_money_under_faults(seed: int) -> None:
    result = run(_bank(seed))
    assert result.ok, f"seed {seed}: {result.violations}"
    assert result.stats["bank_committed"] > 10, result.stats
    assert result.stats["bank_audits"] > 3, result.stats


def test_the_bank_is_off_unless_drawn() -> None:
    assert not SimOptions(seed=1).bank
    drawn = [s for s in range(100) if swarm_options(s).bank]
    assert 15 <= len(drawn) <= 45


def test_a_bank_run_replays_exactly_from_its_seed() -> None:
    a = run(_bank(12))
    b = run(_bank(12))
    assert a.trace_digest == b.trace_digest
    assert a.stats == b.stats


def test_reads_outside_the_snapshot_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted bug: every read moves the transaction's snapshot to now (read committed
    under a serializable name), so a transfer can overwrite a balance another transfer
    changed between its two reads, and an audit can see half a transfer."""

    def read_ts(self: TxnCoordinator, txn: Transaction) -> int:
        txn.read_ts = self.hlc.now()
        return txn.read_ts

    monkeypatch.setattr(TxnCoordinator, "_read_ts", read_ts)
    caught = [s for s in (9, 12) if "bank" in run(_bank(s)).caught_by]
    assert caught, "the planted snapshot bug was not caught"


# -- the checker alone ---------------------------------------------------------------------------

ACCOUNTS = ["a", "b"]


def _t(
    name: str, reads: tuple[int, int], writes: tuple[int, int], how: TransferOutcome
) -> Transfer:
    return Transfer(
        name, dict(zip("ab", reads, strict=True)), dict(zip("ab", writes, strict=True)), how
    )


def test_check_bank_accepts_a_serial_history() -> None:
    ok = _t("t1", (100, 100), (90, 110), TransferOutcome.OK)
    unknown = _t("t2", (90, 110), (80, 120), TransferOutcome.INFO)
    final = Audit("f", {"a": 80, "b": 120})
    assert check_bank(ACCOUNTS, 100, [Audit("x", {"a": 90, "b": 110})], [ok, unknown], final).ok
    final = Audit("f", {"a": 90, "b": 110})  # the unknown one did not commit: also fine
    assert check_bank(ACCOUNTS, 100, [], [ok, unknown], final).ok


def test_check_bank_names_a_torn_audit_and_a_lost_transfer() -> None:
    torn = check_bank(ACCOUNTS, 100, [Audit("x", {"a": 90, "b": 100}, "at n1")], [], None)
    assert not torn.ok and "audit x at n1 saw total 190 != 200" in torn.violations[0]
    ok = _t("t1", (100, 100), (90, 110), TransferOutcome.OK)
    lost = check_bank(ACCOUNTS, 100, [], [ok], Audit("f", {"a": 100, "b": 100}))
    assert not lost.ok and "final-balances" in lost.violations[0]
    failed = _t("t1", (100, 100), (90, 110), TransferOutcome.FAIL)
    applied = check_bank(ACCOUNTS, 100, [], [failed], Audit("f", {"a": 90, "b": 110}))
    assert not applied.ok


def test_a_committed_transaction_is_not_forgotten_before_every_intent_is_resolved() -> None:
    """Regression (seed 40, bank on): a coordinator (or recovery) forgot a committed record
    although resolving one participant's intents had failed; a later reader pushed the
    missing record, which reads as aborted, and dropped those intents: the next snapshot saw
    half of the accounts' creation."""
    result = run(_bank(40))
    assert result.ok, result.violations
