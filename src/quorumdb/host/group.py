"""One Raft group hosted on a node: its RawNode, its state machine, and the requests waiting on it.

Requests never touch the RawNode directly: they queue proposals and reads here and get a
`Pending` answer, and the host's driver (the only code that calls the core) feeds the queues
to the core between Readies and completes the answers when entries apply or read states
arrive.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from quorumdb.host.pending import Pending
from quorumdb.host.state_machine import ReplicatedStateMachine
from quorumdb.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProposalDroppedError,
    RaftError,
    RawNode,
    Ready,
    Snapshot,
    StorageAppend,
    StorageApply,
)
from quorumdb.raft.codec import decode_conf_change
from quorumdb.raft.messages import is_storage_response

__all__ = ["Group", "GroupStats"]

_REQ_KEY = tuple[int, int]
_MIDFLIGHT_TYPES = frozenset((MessageType.APP_RESP, MessageType.HEARTBEAT_RESP))


@dataclass(slots=True)
class GroupStats:
    proposals: int = 0
    proposals_dropped: int = 0
    applied_entries: int = 0
    reads: int = 0
    leader_changes: int = 0
    snapshots_made: int = 0
    snapshots_installed: int = 0
    midflight_applied: int = 0  # entries applied while this node's WAL write ran


@dataclass(slots=True)
class _Pending:
    data: bytes
    key: _REQ_KEY
    future: Pending[Any]
    persisted: Pending[None] | None = None


@dataclass(slots=True)
class Group:
    """A hosted group. `storage` is the durable raft Storage of this group on this node."""

    group_id: int
    raw: RawNode
    sm: ReplicatedStateMachine
    conf_state: ConfState
    inbox: list[Message] = field(default_factory=list)
    proposals: list[_Pending] = field(default_factory=list)
    writes: dict[_REQ_KEY, list[Pending[Any]]] = field(default_factory=dict)
    read_requests: list[tuple[bytes, Pending[int]]] = field(default_factory=list)
    persist_waiters: list[Pending[None]] = field(default_factory=list)
    actions: list[tuple[Callable[[RawNode], None], Pending[None]]] = field(default_factory=list)
    reads: dict[bytes, Pending[int]] = field(default_factory=dict)
    waiting_reads: list[tuple[int, Pending[int]]] = field(default_factory=list)
    snapshot_index: int = 0
    bytes_since_snapshot: int = 0  # entry data applied since the last snapshot
    last_lead: int = 0
    force_snapshot: bool = False
    snapshot_deferred: bool = False  # due, but waiting for the durable commit index
    stats: GroupStats = field(default_factory=GroupStats)
    on_conf_change: Callable[[ConfState], None] | None = None
    # Observers of every entry applied, in order (the simulator's safety checker).
    on_applied: Callable[[Entry], None] | None = None
    # Asynchronous storage writes (KV shards): the core's storage work not yet done, in
    # order: appends for the next WAL write, applies waiting for the current one to end.
    appends: list[StorageAppend] = field(default_factory=list)
    applies: list[StorageApply] = field(default_factory=list)

    # -- requests (called by the API side) -----------------------------------------------

    def submit(
        self, key: tuple[int, int], data: bytes, persisted: Pending[None] | None = None
    ) -> Pending[Any]:
        """Propose `data`; the future resolves with the state machine's answer for `key`.

        `persisted`, if given, resolves as soon as the proposal is durable in this node's
        own log (before any quorum has it: Kafka's acks=1).
        """
        fut: Pending[Any] = Pending()
        waiting = self.writes.get(key)
        if waiting is not None:
            # A retry of a request already in flight here: answer both from one application,
            # and propose it again: the first proposal may have been lost on its way to a
            # leader (a follower's forwarded proposal is dropped silently by a node that is
            # no longer leader), and the session table applies the command at most once.
            waiting.append(fut)
        else:
            self.writes[key] = [fut]
        self.proposals.append(_Pending(data=data, key=key, future=fut, persisted=persisted))
        return fut

    def submit_action(self, act: Callable[[RawNode], None]) -> Pending[None]:
        """Run `act(raw)` in the driver loop (admin operations: conf changes, transfers)."""
        fut: Pending[None] = Pending()
        self.actions.append((act, fut))
        return fut

    def submit_read(self, ctx: bytes) -> Pending[int]:
        fut: Pending[int] = Pending()
        self.read_requests.append((ctx, fut))
        return fut

    # -- inputs, run by the driver loop ------------------------------------------------------

    def feed(self, ticks: int) -> None:
        """Deliver due ticks, queued messages, proposals and read requests to the core."""
        raw = self.raw
        for _ in range(ticks):
            raw.tick()
        if self.inbox:
            msgs, self.inbox = self.inbox, []
            for m in msgs:
                if is_storage_response(m.type):
                    continue  # only this node's driver may say what is durable here
                # e.g. a response from a node that left the configuration
                with contextlib.suppress(RaftError):
                    raw.step(m)
        if self.proposals:
            self._propose()
        if self.actions:
            acts, self.actions = self.actions, []
            for act, done in acts:
                try:
                    act(raw)
                except RaftError as exc:
                    if not done.done():
                        done.set_exception(exc)
                    continue
                if not done.done():
                    done.set_result(None)
        if self.read_requests:
            reqs, self.read_requests = self.read_requests, []
            for ctx, fut in reqs:
                try:
                    raw.read_index(ctx)
                except ProposalDroppedError as exc:
                    if not fut.done():
                        fut.set_exception(exc)
                    continue
                self.reads[ctx] = fut
                self.stats.reads += 1

    def _propose(self) -> None:
        batch, self.proposals = self.proposals, []
        try:
            self.raw.propose_batch([p.data for p in batch])
        except ProposalDroppedError as exc:
            self.stats.proposals_dropped += len(batch)
            for p in batch:
                for fut in self.writes.pop(p.key, []):
                    if not fut.done():
                        fut.set_exception(exc)
            return
        self.stats.proposals += len(batch)
        self.persist_waiters.extend(p.persisted for p in batch if p.persisted is not None)

    def resolve_persisted(self) -> None:
        """This round's Ready (which held every proposal fed before it) is durable now."""
        waiters, self.persist_waiters = self.persist_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    # -- outputs -------------------------------------------------------------------------------

    def apply(self, rd: Ready) -> None:
        """Apply a Ready's snapshot and committed entries; answer writes and reads."""
        self.take(rd)
        self._apply(rd.snapshot, rd.committed_entries)

    def take(self, rd: Ready) -> None:
        """Note a Ready's leader and read states (reads are served once applied).

        When the leader changes, reads still waiting for their index fail at once
        (retryable): the old leader will never answer them (a forwarded ReadIndex is lost
        with it), and waiting for the request timeout would stall the client for nothing."""
        changed = rd.soft_state is not None and rd.soft_state.lead != self.last_lead
        if changed:
            assert rd.soft_state is not None
            self.last_lead = rd.soft_state.lead
            self.stats.leader_changes += 1
        for rs in rd.read_states:
            read = self.reads.pop(rs.request_ctx, None)
            if read is not None:
                self.waiting_reads.append((rs.index, read))
        if changed and self.reads:
            lost, self.reads = self.reads, {}
            for fut in lost.values():
                if not fut.done():
                    fut.set_exception(ProposalDroppedError("the leader changed; retry the read"))
        if self.waiting_reads:
            self._serve_reads()

    def apply_storage(self, work: StorageApply) -> None:
        """Do the core's apply work (committed entries durable here), then tell the core."""
        self._apply(work.snapshot, work.entries)
        for m in work.responses:
            self.raw.step(m)

    def _apply(self, snapshot: Snapshot | None, entries: list[Entry]) -> None:
        if snapshot is not None:
            self.sm.restore(snapshot.data)
            self._answer_restored()
            self.conf_state = snapshot.metadata.conf_state
            self.snapshot_index = snapshot.metadata.index
            self.bytes_since_snapshot = 0
            self.stats.snapshots_installed += 1
        self.apply_entries(entries)
        if self.waiting_reads:
            self._serve_reads()

    def _answer_restored(self) -> None:
        """Answer the writes whose entries the installed snapshot covered (they will not
        be applied here one by one), as far as the restored state remembers them."""
        for key, futs in list(self.writes.items()):
            answer = self.sm.restored_answer(key)
            if answer is None:
                continue
            del self.writes[key]
            for fut in futs:
                if not fut.done():
                    fut.set_result(answer)

    def apply_entries(self, entries: list[Entry]) -> None:
        """Apply committed entries in order, answering the writes waiting on them."""
        raw = self.raw
        sm = self.sm
        writes = self.writes
        if self.on_applied is not None:
            for e in entries:
                self.on_applied(e)
        for e in entries:
            if e.type == EntryType.CONF_CHANGE:
                self.conf_state = raw.apply_conf_change(decode_conf_change(e.data))
                sm.skip(e.index)
                if self.on_conf_change is not None:
                    self.on_conf_change(self.conf_state)
                continue
            if not e.data:
                sm.skip(e.index)
                continue
            answer = sm.apply_entry(e.index, e.data)
            if answer is None:
                continue
            key, result = answer
            waiting = writes.pop(key, None)
            if waiting is None:
                continue
            for fut in waiting:
                if not fut.done():
                    fut.set_result(result)
        self.stats.applied_entries += len(entries)
        self.bytes_since_snapshot += sum(len(e.data) for e in entries)

    def step_midflight(self) -> bool:
        """While this node's WAL write runs: step the leader-side responses in the inbox
        (append and heartbeat acks: they move the commit index) and, on a leader, the queued
        proposals (their appends go out to followers at once); the rest waits for the next
        round. Returns whether the core has a Ready (messages to send, entries reported
        durable that are now committed, a commit index to persist)."""
        raw = self.raw
        if self.inbox:
            keep: list[Message] = []
            for m in self.inbox:
                if m.type in _MIDFLIGHT_TYPES:
                    with contextlib.suppress(RaftError):
                        raw.step(m)
                else:
                    keep.append(m)
            self.inbox = keep
        # (Not proposals that wait for their own persistence: they belong to a Ready.)
        if self.proposals and raw.is_leader and all(p.persisted is None for p in self.proposals):
            self._propose()
        return raw.has_ready()

    def _serve_reads(self) -> None:
        applied = self.sm.applied
        still: list[tuple[int, Pending[int]]] = []
        for index, fut in self.waiting_reads:
            if index <= applied:
                if not fut.done():
                    fut.set_result(index)
            else:
                still.append((index, fut))
        self.waiting_reads = still

    def forget(self, fut: Pending[Any]) -> None:
        """Drop references to a request that timed out (its entry may still apply later)."""
        for key, futs in list(self.writes.items()):
            if fut in futs:
                futs.remove(fut)
                if not futs:
                    del self.writes[key]
        for ctx, f in list(self.reads.items()):
            if f is fut:
                del self.reads[ctx]
        self.waiting_reads = [(i, f) for i, f in self.waiting_reads if f is not fut]
