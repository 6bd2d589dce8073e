"""The KV service of a node over asyncio: the HTTP API's `KVService`, on a `NodeHost`.

The host answers requests later, through `Pending`s; this turns them into coroutines with
the service's error vocabulary (NotLeaderHereError for a 421, ServiceUnavailableError for a
503), times each request for /metrics, and runs the admin operations that take several
steps (membership changes over every group, leadership transfer) as the waits they are.
The Kafka backend writes and reads the KV shards through it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from quorumdb.aio import wait
from quorumdb.host.config import parse_address
from quorumdb.host.group import Group
from quorumdb.host.node_host import CONTROLLER_GROUP, NodeHost
from quorumdb.kv.commands import Command, CommandKind, Isolation, Outcome, Result
from quorumdb.kv.node_kv import kv_state, member_key, node_kv
from quorumdb.kv.service import (
    Consistency,
    NotLeaderHereError,
    ServiceUnavailableError,
    TxnStep,
    ValueRecord,
)
from quorumdb.kv.transactions import Transaction, TxnNotFoundError
from quorumdb.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ProposalDroppedError,
    RawNode,
)

__all__ = ["NodeService"]

_T = TypeVar("_T")
_ADMIN_TIMEOUT_S = 30.0

log = logging.getLogger("quorumdb.kv")


class NodeService:
    """Implements `kv.service.KVService` on a running `NodeHost`."""

    def __init__(self, host: NodeHost) -> None:
        """`host`: one built by `kv.node_kv.NodeKV` (its KV store is `self.kv`)."""
        self.host = host
        self.kv = node_kv(host)

    # -- writes and reads, as the Kafka backend uses them too ----------------------------------

    async def write(self, g: Group, cmd: Command, *, leader_only: bool = True) -> Result:
        """Propose `cmd` on `g` and wait for its result. With `leader_only` off, a follower
        proposes too (the core forwards it to the leader) and answers once it applies it."""
        if leader_only and not g.raw.is_leader:
            raise NotLeaderHereError(self.host.leader_url(g))
        try:
            return await wait(self.kv.submit_write(g, cmd))
        except ProposalDroppedError:
            raise NotLeaderHereError(self.host.leader_url(g)) from None

    async def read_barrier(self, g: Group, *, timeout_s: float | None = None) -> None:
        """Wait until a linearizable read of `g` may be served here (ReadIndex); at most
        `timeout_s` (default: the configured request timeout)."""
        try:
            await wait(self.host.submit_read(g, timeout_s))
        except ProposalDroppedError:
            raise ServiceUnavailableError("no leader to confirm the read") from None

    async def act(self, g: Group, act: Callable[[RawNode], None]) -> None:
        try:
            await wait(self.host.submit_action(g, act))
        except ProposalDroppedError as exc:
            raise ServiceUnavailableError(f"group {g.group_id}: {exc}") from None

    # -- KVService -------------------------------------------------------------------------------

    async def put(
        self, key: bytes, value: bytes, *, expected_revision: int, client: int, seq: int
    ) -> Result:
        kind = CommandKind.CAS if expected_revision >= 0 else CommandKind.PUT
        cmd = Command(
            kind=kind,
            key=key,
            value=value,
            expected_revision=expected_revision,
            client=client,
            seq=seq,
            ts=self.kv.hlc.now(),
        )
        return await self._timed("put", self._write_key(cmd))

    async def delete(self, key: bytes, *, client: int, seq: int) -> Result:
        cmd = Command(
            kind=CommandKind.DELETE, key=key, client=client, seq=seq, ts=self.kv.hlc.now()
        )
        return await self._timed("delete", self._write_key(cmd))

    async def _write_key(self, cmd: Command) -> Result:
        """A single-key write on the key's leader; a transaction holding the key (CONFLICT)
        is waited for, or aborted once expired, and the write tried again."""
        g = self.host.shard_of(cmd.key)
        while True:
            result = await self.write(g, cmd)
            if result.outcome != Outcome.CONFLICT:
                self.kv.hlc.update(result.ts)
                return result
            await wait(self.kv.transactions.resolve_conflict(result, g))
            cmd = msgspec.structs.replace(cmd, attempt=cmd.attempt + 1)

    # -- transactions ----------------------------------------------------------------------------

    def _txn(self, txn: str) -> Transaction:
        node, _, local = txn.partition(".")
        try:
            node_id, txn_id = int(node), int(local, 16)
        except ValueError:
            raise TxnNotFoundError(f"malformed transaction id {txn!r}") from None
        if node_id != self.host.config.node_id:
            member = self.host.members.get(node_id)
            if member is None:
                raise TxnNotFoundError(f"transaction {txn} was begun on unknown node {node_id}")
            raise NotLeaderHereError(member.http_url)
        return self.kv.transactions.lookup(txn_id)

    async def txn_begin(
        self, isolation: Isolation, timeout_s: float, seen_ts: int
    ) -> dict[str, Any]:
        t = self.kv.transactions.begin(isolation, timeout_s=timeout_s, seen_ts=seen_ts)
        return {
            "txn": f"{self.host.config.node_id}.{t.id:x}",
            "isolation": isolation.name.lower(),
            "read_ts": t.read_ts,
        }

    async def txn_steps(self, txn: str, steps: list[TxnStep]) -> list[Any]:
        t = self._txn(txn)
        coordinator = self.kv.transactions
        out: list[Any] = []
        with coordinator.busy(t):
            for step in steps:
                if step.op == "get":
                    got = await wait(coordinator.get(t, step.key))
                    out.append(None if got is None else got.decode(errors="replace"))
                elif step.op == "scan":
                    rows = await wait(coordinator.scan(t, step.key, step.end, step.limit))
                    out.append(
                        [[k.decode(errors="replace"), v.decode(errors="replace")] for k, v in rows]
                    )
                else:
                    await wait(
                        coordinator.write(t, step.key, step.value if step.op == "put" else None)
                    )
                    out.append(None)
        return out

    async def txn_commit(self, txn: str) -> dict[str, Any]:
        t = self._txn(txn)
        coordinator = self.kv.transactions
        with coordinator.busy(t):
            ts = await self._timed("txn_commit", wait(coordinator.commit(t)))
        return {"committed": True, "commit_ts": ts}

    async def txn_abort(self, txn: str) -> dict[str, Any]:
        t = self._txn(txn)
        self.kv.transactions.abort(t)
        return {"aborted": True}

    async def get(self, key: bytes, consistency: Consistency) -> ValueRecord | None:
        async def op() -> ValueRecord | None:
            g = self.host.shard_of(key)
            if consistency != Consistency.STALE:
                await self.read_barrier(g)
                if kv_state(g).store.intents:  # a commit under way: see it through
                    await wait(self.kv.transactions.settle(g, key, key + b"\0"))
            got = kv_state(g).get(key)
            return None if got is None else ValueRecord(key=key, value=got[0], revision=got[1])

        return await self._timed("get", op())

    async def scan(
        self, start: bytes, end: bytes | None, limit: int, consistency: Consistency
    ) -> list[ValueRecord]:
        async def op() -> list[ValueRecord]:
            groups = self.host.groups
            shards = [g for gid, g in sorted(groups.items()) if gid != CONTROLLER_GROUP]
            if consistency != Consistency.STALE:
                await asyncio.gather(*(self.read_barrier(g) for g in shards))
                settling = [g for g in shards if kv_state(g).store.intents]
                await asyncio.gather(
                    *(wait(self.kv.transactions.settle(g, start, end)) for g in settling)
                )
            rows = [r for g in shards for r in kv_state(g).scan(start, end, limit)]
            rows.sort()
            return [ValueRecord(key=k, value=v, revision=r) for k, v, r in rows[:limit]]

        return await self._timed("scan", op())

    async def _timed(self, name: str, coro: Awaitable[_T]) -> _T:
        started = time.perf_counter()
        status = 200
        try:
            return await coro
        except NotLeaderHereError:
            status = 421
            raise
        except ServiceUnavailableError:
            status = 503
            raise
        finally:
            self.host.observe_request(name, status, time.perf_counter() - started)

    def cluster_status(self) -> dict[str, Any]:
        return self.host.cluster_status()

    def health(self) -> dict[str, Any]:
        return self.host.health()

    def metrics_text(self) -> str:
        return self.host.metrics_text()

    # -- membership and leadership -----------------------------------------------------------------

    async def _until(self, cond: Callable[[], bool], what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not cond():
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    async def _change(self, g: Group, change: ConfChangeSingle) -> None:
        """Propose one simple membership change on `g` and wait until it applies here."""
        want_in = change.type != ConfChangeType.REMOVE_NODE
        node_id = change.node_id
        deadline = time.monotonic() + _ADMIN_TIMEOUT_S

        def done() -> bool:
            return (node_id in g.conf_state.voters) == want_in

        while not done():
            if time.monotonic() > deadline:
                raise ServiceUnavailableError(f"group {g.group_id}: {change} did not apply")
            cc = ConfChange(changes=(change,))
            with contextlib.suppress(ServiceUnavailableError):
                await self.act(g, functools.partial(RawNode.propose_conf_change, cc=cc))
            # Refused (another change pending), dropped or lost: look again, then re-propose.
            with contextlib.suppress(ServiceUnavailableError):
                await self._until(done, f"group {g.group_id} to apply {change}", 2.0)
        log.info("group=%d applied %s", g.group_id, change)

    def _require_controller_leader(self) -> None:
        g = self.host.groups[CONTROLLER_GROUP]
        if not g.raw.is_leader:
            raise NotLeaderHereError(self.host.leader_url(g))

    async def add_member(self, node_id: int, raft: str, http: str) -> dict[str, Any]:
        """Make `node_id` a voter of every group (it must be running, with an empty data dir)."""
        self._require_controller_leader()
        parse_address(raft, "raft address")
        parse_address(http, "http address")
        record = json.dumps({"raft": raft, "http": http}).encode()
        ctl = self.host.groups[CONTROLLER_GROUP]
        await self.write(ctl, Command(kind=CommandKind.PUT, key=member_key(node_id), value=record))
        change = ConfChangeSingle(type=ConfChangeType.ADD_NODE, node_id=node_id)
        await asyncio.gather(*(self._change(g, change) for g in self.host.groups.values()))
        return {"added": node_id, "groups": sorted(self.host.groups)}

    async def remove_member(self, node_id: int) -> dict[str, Any]:
        """Remove `node_id` from every group (moving leadership away first) and forget it."""
        self._require_controller_leader()
        voters = self.host.groups[CONTROLLER_GROUP].conf_state.voters
        if node_id not in voters:
            raise LookupError(f"node {node_id} is not a member")
        if node_id == self.host.config.node_id:
            raise LookupError("ask another node to remove this one (it leads the controller)")
        others = [i for i in sorted(voters) if i != node_id]
        for g in self.host.groups.values():
            if g.raw.lead == node_id:
                to = others[0]
                await self.act(g, functools.partial(RawNode.transfer_leader, transferee=to))
                moved = functools.partial(_lead_is_not, g, (0, node_id))
                await self._until(moved, "leadership to move", 10.0)
        change = ConfChangeSingle(type=ConfChangeType.REMOVE_NODE, node_id=node_id)
        for g in self.host.groups.values():
            await self._change(g, change)
        ctl = self.host.groups[CONTROLLER_GROUP]
        await self.write(ctl, Command(kind=CommandKind.DELETE, key=member_key(node_id)))
        return {"removed": node_id}

    async def transfer_leader(self, to: int, group: int | None) -> dict[str, Any]:
        """Ask the leaders of `group` (or of every group) to hand leadership to `to`."""
        if to not in self.host.members:
            raise LookupError(f"node {to} is not a member")
        if group is not None and group not in self.host.groups:
            raise LookupError(f"no group {group}")
        groups = self.host.groups
        targets = [groups[group]] if group is not None else list(groups.values())
        deadline = time.monotonic() + _ADMIN_TIMEOUT_S
        for g in targets:
            # A transfer is abandoned after an election timeout if the target is not caught
            # up by then (Raft thesis §3.10): ask again until it happens or time runs out.
            while g.raw.lead != to:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(f"group {g.group_id}: leadership did not move")
                with contextlib.suppress(ServiceUnavailableError):
                    await self.act(g, functools.partial(RawNode.transfer_leader, transferee=to))
                arrived = functools.partial(_lead_is, g, to)
                with contextlib.suppress(ServiceUnavailableError):
                    await self._until(arrived, f"group {g.group_id} leader {to}", 0.5)
        return {"leader": to, "groups": [g.group_id for g in targets]}


def _lead_is(g: Group, node_id: int) -> bool:
    return g.raw.lead == node_id


def _lead_is_not(g: Group, node_ids: tuple[int, ...]) -> bool:
    return g.raw.lead not in node_ids
