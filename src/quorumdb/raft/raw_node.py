"""`RawNode`: the driver-facing API of the core (etcd's rawnode.go).

Inputs: `tick()`, `step(message)`, `propose(data)`, `propose_conf_change(cc)`,
`read_index(ctx)`, `transfer_leader(to)`, `campaign()`. Output: `ready()` returns a `Ready`
(see `raft/ready.py` for the contract); `advance(ready)` says it was handled. With
`Config.async_storage_writes` there is no `advance`: the driver steps back the responses of
the Ready's `storage_append` and `storage_apply` as that work completes. Nothing here does
I/O, reads a clock or draws randomness except through the injected `Rng`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from quorumdb.raft.config import Config, PlantedBug
from quorumdb.raft.core import Rng, _Raft
from quorumdb.raft.errors import StepLocalMessageError, StepPeerNotFoundError
from quorumdb.raft.messages import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotChunk,
    SoftState,
    StateType,
    is_local_message,
    is_response_message,
    is_storage_response,
)
from quorumdb.raft.ready import Ready, StorageAppend, StorageApply
from quorumdb.raft.storage import Storage
from quorumdb.raft.tracker import Progress

__all__ = ["RawNode", "Status", "encode_conf_change"]

MT = MessageType
_encode = msgspec.msgpack.Encoder().encode


def encode_conf_change(cc: ConfChange) -> bytes:
    """The bytes a CONF_CHANGE entry carries (decoded by `RawNode.apply_conf_change`'s caller)."""
    return _encode(cc)


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """A snapshot of a node's state for status pages and tests."""

    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    last_index: int
    progress: dict[int, str]
    config: str
    lead_transferee: int


class RawNode:
    """A Raft node without I/O. Not thread-safe: one driver calls it from one thread."""

    __slots__ = (
        "_async",
        "_number",
        "_pending_self",
        "_prev_hard",
        "_prev_soft",
        "_snapshot_to_apply",
        "raft",
    )

    def __init__(self, config: Config, storage: Storage, rng: Rng) -> None:
        self.raft = _Raft(config, storage, rng)
        self._async = config.async_storage_writes
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()
        self._number = 0
        self._pending_self: list[Message] = []
        # Asynchronous storage writes: a snapshot the driver reported durable, to be handed
        # to the apply thread by the next Ready.
        self._snapshot_to_apply: Snapshot | None = None

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def campaign(self) -> None:
        self.raft.step(Message(type=MT.HUP, to=self.raft.id, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose one command. Raises ProposalDroppedError (or NotLeaderError) if refused."""
        self.raft.step(
            Message(
                type=MT.PROP,
                to=self.raft.id,
                from_=self.raft.id,
                entries=[Entry(term=0, index=0, data=data)],
            )
        )

    def propose_batch(self, datas: Sequence[bytes]) -> None:
        """Propose many commands as one batch (one append, one broadcast)."""
        self.raft.step(
            Message(
                type=MT.PROP,
                to=self.raft.id,
                from_=self.raft.id,
                entries=[Entry(term=0, index=0, data=d) for d in datas],
            )
        )

    def propose_conf_change(self, cc: ConfChange) -> None:
        e = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=encode_conf_change(cc))
        self.raft.step(Message(type=MT.PROP, to=self.raft.id, from_=self.raft.id, entries=[e]))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change entry; the driver calls this while applying."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message from a peer.

        Raises:
            StepLocalMessageError: `m` is a local-only type.
            StepPeerNotFoundError: a response from a node not in the configuration (e.g. one
                just removed); drivers drop it.
            ProposalDroppedError: a proposal forwarded to this node, which cannot take it
                (no longer leader, transfer in progress); drivers drop it, the client retries.
        """
        r = self.raft
        if is_storage_response(m.type):
            if not self._async or m.from_ != r.id or m.to != r.id:
                raise StepLocalMessageError(f"{m.type.name} only comes from this node's driver")
            if m.type == MT.STORAGE_APPEND_RESP:
                self._append_done(m)
            else:
                self._apply_done(m)
            return
        if is_local_message(m.type):
            raise StepLocalMessageError(f"{m.type.name} is local-only")
        if m.from_ not in r.trk.progress and is_response_message(m.type):
            raise StepPeerNotFoundError(f"response from unknown peer {m.from_}")
        r.step(m)

    def report_unreachable(self, node_id: int) -> None:
        """The driver failed to send to `node_id`: stop pipelining to it."""
        r = self.raft
        if node_id in r.trk.progress:
            r.step(Message(type=MT.UNREACHABLE, to=r.id, from_=node_id))

    def read_index(self, ctx: bytes) -> None:
        """Ask for a linearizable read; a `ReadState` with this `ctx` arrives in a Ready.

        Raises ProposalDroppedError when no leader is known to confirm it.
        """
        r = self.raft
        if PlantedBug.STALE_LOCAL_READS in r.bugs:
            r.local_read_index(ctx)
            return
        r.step(Message(type=MT.READ_INDEX, to=r.id, from_=r.id, context=ctx))

    def transfer_leader(self, transferee: int) -> None:
        r = self.raft
        r.step(Message(type=MT.TRANSFER_LEADER, to=r.id, from_=transferee, term=r.term))

    # -- output ------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        # Called for every group on every driver round: cheap tests first, no allocation.
        r = self.raft
        if r.msgs or r.msgs_after_append or r.read_states:
            return True
        log = r.raft_log
        u = log.unstable
        if self._async:
            if (
                u.has_next_entries()
                or (u.snapshot is not None and not u.snapshot_in_progress)
                or self._snapshot_to_apply is not None
                or log.has_next_committed_entries(allow_unstable=False)
            ):
                return True
        elif u.entries or u.snapshot is not None or log.has_next_committed_entries():
            return True
        soft, hard = self._prev_soft, self._prev_hard
        return (
            r.lead != soft.lead
            or r.state != soft.raft_state
            or r.term != hard.term
            or r.vote != hard.vote
            or log.committed != hard.commit
        )

    def ready(self) -> Ready:
        """Collect the next batch of work. In lock-step mode, call `advance` with it before
        the next `ready`; with asynchronous storage writes, handle its storage records (see
        `raft.ready`) and call `ready` again whenever `has_ready` says so."""
        if self._async:
            return self._ready_async()
        r = self.raft
        log = r.raft_log
        self._number += 1
        soft = r.soft_state()
        hard = r.hard_state()
        entries = list(log.unstable.entries)
        snapshot = log.unstable.snapshot
        committed = log.next_committed_entries()
        after = r.msgs_after_append
        persisted = [m for m in after if m.to != r.id]
        self._pending_self = [m for m in after if m.to == r.id]
        hard_changed = hard != self._prev_hard
        rd = Ready(
            number=self._number,
            soft_state=soft if soft != self._prev_soft else None,
            hard_state=hard if hard_changed else None,
            read_states=r.read_states,
            entries=entries,
            snapshot=snapshot,
            committed_entries=committed,
            messages=r.msgs,
            persisted_messages=persisted,
            must_sync=bool(entries)
            or snapshot is not None
            or hard.term != self._prev_hard.term
            or hard.vote != self._prev_hard.vote,
        )
        r.msgs = []
        r.msgs_after_append = []
        r.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        log.unstable.accept_in_progress()
        if committed:
            log.accept_applying(committed[-1].index)
        return rd

    def _ready_async(self) -> Ready:
        r = self.raft
        self._number += 1
        soft = r.soft_state()
        hard = r.hard_state()
        hard_changed = hard != self._prev_hard
        must_sync = hard.term != self._prev_hard.term or hard.vote != self._prev_hard.vote
        append = self._storage_append(hard if hard_changed else None, must_sync)
        rd = Ready(
            number=self._number,
            soft_state=soft if soft != self._prev_soft else None,
            read_states=r.read_states,
            entries=[],
            committed_entries=[],
            messages=r.msgs,
            persisted_messages=[],
            must_sync=append is not None and append.must_sync,
            storage_append=append,
            storage_apply=self._storage_apply(),
        )
        r.msgs = []
        r.read_states = []
        self._prev_soft = soft
        self._prev_hard = hard
        return rd

    def _storage_append(self, hard: HardState | None, must_sync: bool) -> StorageAppend | None:
        """The append thread's next work, or None; hands the unstable log out."""
        r = self.raft
        u = r.raft_log.unstable
        entries = list(u.next_entries())
        snapshot = u.next_snapshot()
        if not (entries or snapshot is not None or hard is not None or r.msgs_after_append):
            return None
        # What the core learns once the write is durable: the last entry and snapshot written.
        done = Message(type=MT.STORAGE_APPEND_RESP, to=r.id, from_=r.id)
        if entries:
            done = msgspec.structs.replace(done, index=entries[-1].index, log_term=entries[-1].term)
        if snapshot is not None:
            chunk = SnapshotChunk(metadata=snapshot.metadata, offset=0, data=b"", done=True)
            done = msgspec.structs.replace(done, snapshot=chunk)
        sa = StorageAppend(
            hard_state=hard,
            entries=entries,
            snapshot=snapshot,
            must_sync=must_sync or bool(entries) or snapshot is not None,
            responses=[*r.msgs_after_append, done],
        )
        r.msgs_after_append = []
        u.accept_in_progress()
        return sa

    def _storage_apply(self) -> StorageApply | None:
        """The apply thread's next work, or None: a snapshot reported durable, then committed
        entries reported durable here."""
        r = self.raft
        log = r.raft_log
        snapshot, self._snapshot_to_apply = self._snapshot_to_apply, None
        committed = log.next_committed_entries(allow_unstable=False)
        if snapshot is None and not committed:
            return None
        index = committed[-1].index if committed else 0
        if committed:
            log.accept_applying(index)
        done = Message(
            type=MT.STORAGE_APPLY_RESP, to=r.id, from_=r.id, index=index, entries=committed
        )
        return StorageApply(snapshot=snapshot, entries=committed, responses=[done])

    def _append_done(self, m: Message) -> None:
        log = self.raft.raft_log
        if m.snapshot is not None:
            index = m.snapshot.metadata.index
            if log.unstable.snapshot is not None and log.unstable.snapshot.metadata.index == index:
                self._snapshot_to_apply = log.unstable.snapshot
            log.stable_snap_to(index)
        if m.index:
            log.stable_to(m.index, m.log_term)

    def _apply_done(self, m: Message) -> None:
        if m.entries:
            r = self.raft
            r.applied_to(m.index)
            r.reduce_uncommitted_size(m.entries)

    def advance(self, rd: Ready) -> None:
        """The driver persisted, sent and applied `rd` (in that order)."""
        assert not self._async, "with async_storage_writes, step the storage responses instead"
        assert rd.number == self._number, f"advance({rd.number}) but last Ready was {self._number}"
        r = self.raft
        log = r.raft_log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        pending, self._pending_self = self._pending_self, []
        for m in pending:
            r.step(m)
        if rd.committed_entries:
            r.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(rd.committed_entries)

    # -- inspection --------------------------------------------------------------------------

    def status(self) -> Status:
        r = self.raft
        prs: dict[int, str] = {}
        if r.state == StateType.LEADER:
            prs = {i: repr(pr) for i, pr in r.trk.visit()}
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.raft_log.applied,
            last_index=r.raft_log.last_index(),
            progress=prs,
            config=repr(r.trk.config),
            lead_transferee=r.lead_transferee,
        )

    @property
    def async_storage_writes(self) -> bool:
        """Whether Readies carry storage records (no `advance`; see `raft.ready`)."""
        return self._async

    @property
    def lead(self) -> int:
        return self.raft.lead

    @property
    def is_leader(self) -> bool:
        return self.raft.state == StateType.LEADER and self.raft.lead != NONE

    def progress(self, node_id: int) -> Progress | None:
        return self.raft.trk.progress.get(node_id)

    def progresses(self) -> list[tuple[int, Progress]]:
        """Every member's `Progress`, in id order (meaningful on a leader)."""
        return list(self.raft.trk.visit())

    @property
    def term(self) -> int:
        """The current term (Kafka's leader epoch of a partition)."""
        return self.raft.term

    def first_index(self) -> int:
        """The first index of this node's log (after its snapshot)."""
        return self.raft.raft_log.first_index()

    def last_index(self) -> int:
        """The last index of this node's log, persisted or not."""
        return self.raft.raft_log.last_index()

    def term_of(self, index: int) -> int:
        """The term of this node's entry at `index`; 0 if compacted away or beyond the end."""
        return self.raft.raft_log.term(index)

    def log_entries(self, lo: int, hi: int, max_bytes: int = 1 << 62) -> list[Entry]:
        """This node's log entries in [lo, hi), stable or not (inspection; may raise
        CompactedError below the first index)."""
        return self.raft.raft_log.slice(lo, hi, max_bytes)
