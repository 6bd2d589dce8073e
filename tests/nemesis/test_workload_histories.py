"""The pieces of the real-process workloads that need no cluster: what a commit's answer means
to the history, how a bank history is read back for its checker, what each workload's check
declares lost or not live, and when the Kafka final read trusts a partition's end."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import TopicPartition  # type: ignore[import-untyped]
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from quorumdb.check.bank import TransferOutcome
from quorumdb.kv.client import ClientError, SerializationFailureError, UnavailableError
from quorumdb.nemesis.bank_workload import (
    BankWorkload,
    bank_history_from_events,
    lost_update_suspects,
)
from quorumdb.nemesis.kafka_workload import TOPIC, KafkaWorkload
from quorumdb.nemesis.list_append_workload import ListAppendWorkload
from quorumdb.nemesis.register import RegisterWorkload
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


# -- what each workload's check says with no cluster behind it -----------------------------------


def _send(process: int, partition: int, offset: int) -> list[dict[str, Any]]:
    sent = {"topic": TOPIC, "partition": partition, "value": f"{process}-{offset}"}
    return [
        {"process": process, "type": "invoke", "f": "send", "value": sent, "time": 2 * offset},
        {"process": process, "type": "ok", "f": "send", "value": {**sent, "offset": offset},
         "time": 2 * offset + 1},
    ]  # fmt: skip


def test_every_workload_declares_its_lost_acknowledged_writes() -> None:
    urls = ["http://127.0.0.1:1"]
    for workload in (
        RegisterWorkload(urls, clients=1, keys=2, rate=1.0, seed=0),
        BankWorkload(urls, clients=1, accounts=2, rate=1.0, seed=0),
        ListAppendWorkload(urls, clients=1, keys=2, rate=1.0, seed=0),
        KafkaWorkload(["127.0.0.1:1"], clients=1, partitions=1, rate=1.0, seed=0),
    ):
        assert workload.check().details["lost_acked"] == 0, workload.name


def test_kafka_counts_unread_records_as_lost_only_when_the_log_was_read_to_its_end() -> None:
    kafka = KafkaWorkload(["127.0.0.1:1"], clients=1, partitions=1, rate=1.0, seed=0)
    kafka.history.events = [*_send(0, 0, 0), *_send(1, 0, 1)]  # nobody read either
    assert kafka.check().details["lost_acked"] == 0
    kafka._reached_end = True
    assert kafka.check().details["lost_acked"] == 2


def test_a_register_key_with_no_final_read_is_a_liveness_anomaly() -> None:
    register = RegisterWorkload(["http://127.0.0.1:1"], clients=1, keys=2, rate=1.0, seed=0)
    register._final_read.add("r0")
    verdict = register.check()
    assert not verdict.valid
    (anomaly,) = verdict.anomalies
    assert (anomaly["kind"], anomaly["keys"]) == ("liveness", ["r1"])
    assert "liveness: no final read of r1" in verdict.summary


class _Consumer:
    """Stands in for `AIOKafkaConsumer` in a final read: `end_offsets` answers `ends` once,
    then fails; each poll returns the next offset of partition 0 up to `log_end`."""

    def __init__(self, ends: dict[int, int], log_end: int) -> None:
        self.ends: dict[int, int] | None = ends
        self.log_end = log_end
        self.next = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends, self.ends = self.ends, None
        if ends is None:
            raise KafkaError("no leader")
        return {TopicPartition(TOPIC, p): o for p, o in ends.items()}

    async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
        await asyncio.sleep(0.01)
        if self.next >= self.log_end:
            return {}
        self.next += 1
        record = SimpleNamespace(offset=self.next - 1, value=f"0-{self.next - 1}".encode())
        return {TopicPartition(TOPIC, 0): [record]}


def test_a_kafka_final_read_does_not_trust_an_old_end_below_an_acknowledged_offset() -> None:
    kafka = KafkaWorkload(["127.0.0.1:1"], clients=1, partitions=1, rate=1.0, seed=0)
    kafka._acked = {0: 3}  # acknowledged up to offset 3; the first end seen was 1
    consumer = _Consumer({0: 1}, log_end=4)
    asyncio.run(kafka._read_to_end(consumer, time.monotonic() + 0.3))
    assert not kafka._reached_end
    assert "from an earlier end-offsets call" in kafka._final_note


def test_a_kafka_final_read_ends_at_an_old_end_above_every_acknowledged_offset() -> None:
    kafka = KafkaWorkload(["127.0.0.1:1"], clients=1, partitions=1, rate=1.0, seed=0)
    kafka._acked = {0: 1}
    consumer = _Consumer({0: 2}, log_end=4)
    asyncio.run(kafka._read_to_end(consumer, time.monotonic() + 5.0))
    assert kafka._reached_end and not kafka._final_note
    assert consumer.next == 2, "it stopped at the end"
