"""Bank transfers: did serializable transfers between accounts conserve the money?

The workload (the simulator's `sim.bank_workload`, or any client) keeps N accounts that start
at `initial` each; transfers are serializable transactions that read two accounts and write
both (`src - amount`, `dst + amount`); audits are snapshot transactions that read every
account. In any serializable history every snapshot sees a state after some prefix of the
committed transfers, so:

``audit-total``
    every audit that committed sees every account, and a total of N * `initial` (a partial
    transfer, a lost or doubled write, a torn snapshot would show here);
``missing-account``
    no transaction, once the accounts exist, reads one as absent;
``final-balances``
    the final audit (read after every transfer ended) sees each account at `initial` plus
    the changes of every committed transfer plus those of SOME subset of the transfers whose
    outcome is unknown, and none of the failed ones (a transfer reported failed that applied,
    or one reported committed that did not, shows here even when the total is right).

Pure: no quorumdb imports, no I/O, so histories recorded elsewhere are checked alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["Audit", "BankResult", "Transfer", "TransferOutcome", "check_bank"]

_REACHABLE_MAX = 200_000  # subset sums of unknown transfers tracked before giving up


class TransferOutcome(Enum):
    OK = "ok"  # committed
    FAIL = "fail"  # definitely not committed (e.g. a serialization failure)
    INFO = "info"  # unknown: may or may not have committed


@dataclass(frozen=True, slots=True)
class Transfer:
    """One transfer: what it read and what it wrote (absolute balances), and its outcome."""

    name: str
    reads: Mapping[str, int | None]
    writes: Mapping[str, int]
    outcome: TransferOutcome

    def deltas(self) -> dict[str, int]:
        return {k: v - (self.reads.get(k) or 0) for k, v in self.writes.items()}


@dataclass(frozen=True, slots=True)
class Audit:
    """One committed snapshot read of every account; `where` says on which node, when."""

    name: str
    reads: Mapping[str, int | None]
    where: str = ""


@dataclass(slots=True)
class BankResult:
    violations: list[str] = field(default_factory=list)
    inconclusive: str = ""  # why the final-balances check could not be decided, if so

    @property
    def ok(self) -> bool:
        return not self.violations


def check_bank(
    accounts: Sequence[str],
    initial: int,
    audits: Sequence[Audit],
    transfers: Sequence[Transfer],
    final: Audit | None,
) -> BankResult:
    """Judge a bank history (see the module docstring); `final` is the audit read after every
    transfer ended, if one succeeded (its absence is the caller's liveness concern)."""
    out = BankResult()
    expected = initial * len(accounts)
    for a in [*audits, *([final] if final is not None else [])]:
        missing = [k for k in accounts if a.reads.get(k) is None]
        total = sum(a.reads.get(k) or 0 for k in accounts)
        if missing or total != expected:
            out.violations.append(
                f"audit-total: audit {a.name} {a.where} saw total {total} != {expected}"
                f" (missing {missing}): {_show(a.reads, accounts)}"
            )
    for t in transfers:
        missing = [k for k, v in t.reads.items() if v is None]
        if missing:
            out.violations.append(f"missing-account: transfer {t.name} read {missing} as absent")
    if final is not None and not out.violations:
        _check_final(accounts, initial, transfers, final, out)
    return out


def _check_final(
    accounts: Sequence[str],
    initial: int,
    transfers: Sequence[Transfer],
    final: Audit,
    out: BankResult,
) -> None:
    index = {k: i for i, k in enumerate(accounts)}
    want = [(final.reads.get(k) or 0) - initial for k in accounts]
    for t in transfers:
        if t.outcome == TransferOutcome.OK:
            for k, d in t.deltas().items():
                want[index[k]] -= d
    residual = tuple(want)
    zero = (0,) * len(accounts)
    reachable = {zero}
    for t in transfers:
        if t.outcome != TransferOutcome.INFO:
            continue
        vec = [0] * len(accounts)
        for k, d in t.deltas().items():
            vec[index[k]] += d
        reachable |= {tuple(a + b for a, b in zip(r, vec, strict=True)) for r in reachable}
        if len(reachable) > _REACHABLE_MAX:
            out.inconclusive = f"more than {_REACHABLE_MAX} subsets of unknown transfers"
            return
    if residual not in reachable:
        unknown = sum(1 for t in transfers if t.outcome == TransferOutcome.INFO)
        committed = sum(1 for t in transfers if t.outcome == TransferOutcome.OK)
        off = {k: r for k, r in zip(accounts, residual, strict=True) if r}
        out.violations.append(
            f"final-balances: final audit {final.name} {final.where} read "
            f"{_show(final.reads, accounts)}, which no subset of the {unknown} unknown transfers "
            f"explains on top of the {committed} committed ones (unexplained changes {off})"
        )


def _show(reads: Mapping[str, int | None], accounts: Sequence[str]) -> str:
    return "{" + ", ".join(f"{k}={reads.get(k)}" for k in accounts) + "}"
