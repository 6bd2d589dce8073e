"""The Raft state machine: one node's term, vote, log, role and per-peer progress.

Theory of operation (etcd-raft's raft.go; Raft paper §5, thesis §3-§6):

- `step(m)` handles the message term once for every role: a higher term makes us a follower
  (except for pre-votes, which never change terms, and vote requests inside a leader's lease);
  a lower term is dropped, answered only so a stale leader or pre-candidate learns the new term.
  Then it dispatches to `_step_role`, which `_become_*` rebinds: roles swap behaviour, not flags.
- `tick()` calls `_tick_role`: followers and candidates count toward an election, the leader
  toward heartbeats and its check-quorum deadline. There is no clock: time is ticks.
- Output goes into two lists. `msgs` may be sent at once. `msgs_after_append` promise durability
  (vote grants, append acks, and the leader's self-ack of its own entries), so the driver sends
  them only after persisting the Ready's entries and hard state (thesis §10.2.1); with
  asynchronous storage writes they are the responses of the Ready's StorageAppend.
- The leader commits an index only when a quorum has it and it is from the leader's own term
  (§5.4.2); each term starts with a no-op entry so that earlier entries commit promptly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec

from quorumdb.raft import confchange
from quorumdb.raft.config import Config, PlantedBug
from quorumdb.raft.errors import (
    CompactedError,
    ConfigError,
    NotLeaderError,
    ProposalDroppedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from quorumdb.raft.log import RaftLog
from quorumdb.raft.messages import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotChunk,
    SnapshotMetadata,
    SoftState,
    StateType,
)
from quorumdb.raft.quorum import VoteResult
from quorumdb.raft.read_only import ReadOnly, ReadOnlyOption
from quorumdb.raft.storage import Storage
from quorumdb.raft.tracker import Progress, ProgressState, ProgressTracker, TrackerConfig

__all__ = ["CAMPAIGN_TRANSFER", "Rng"]

MT = MessageType

CAMPAIGN_TRANSFER = b"CampaignTransfer"
"""Vote context of an election forced by leadership transfer: it bypasses leases."""

_decode_conf_change = msgspec.msgpack.Decoder(ConfChange).decode
_encode = msgspec.msgpack.Encoder().encode


class Rng:
    """The randomness the core may use: a source of integers in [0, n). Injected, never global."""

    def __init__(self, randrange: Callable[[int], int]) -> None:
        self.randrange = randrange


def _vote_resp_type(t: MessageType) -> MessageType:
    return MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP


class _Raft:
    def __init__(self, c: Config, storage: Storage, rng: Rng) -> None:
        c.validate()
        self.id = c.id
        self.config = c
        self.rng = rng
        self.bugs = c.planted_bugs
        self.raft_log = RaftLog(storage, c.max_committed_size_per_ready)
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.lead_transferee = NONE
        self.lease_revoked = False
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.tick_count = 0
        self.check_quorum = c.check_quorum and PlantedBug.LEASE_WITHOUT_QUORUM not in self.bugs
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_ticks
        self.election_timeout = c.election_ticks
        self.randomized_election_timeout = c.election_ticks
        self.snap_recv: tuple[SnapshotMetadata, bytearray] | None = None
        self._step_role: Callable[[Message], None] = self._step_follower
        self._tick_role: Callable[[], None] = self._tick_election

        hs, cs = storage.initial_state()
        # With lease reads, a restarted node may have acknowledged a leader's heartbeat just
        # before it went down, and the leader counts on that promise (no vote for another
        # candidate within an election timeout). The node cannot know, so it keeps the promise
        # for one election timeout after starting (see `_step_higher_term`).
        self.lease_after_restart = (
            c.read_only_option == ReadOnlyOption.LEASE_BASED and self.check_quorum and hs.term > 0
        )
        confchange.restore(self.trk, self.raft_log.last_index(), cs)
        self.is_learner = self.id in self.trk.config.learners
        if not hs.is_empty():
            self._load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied)
        self._become_follower(self.term, NONE)

    # -- small helpers ----------------------------------------------------------------------

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.raft_log.committed)

    def _load_state(self, hs: HardState) -> None:
        log = self.raft_log
        if not log.committed <= hs.commit <= log.last_index():
            raise AssertionError(
                f"hard state commit {hs.commit} out of range [{log.committed}, {log.last_index()}]"
            )
        log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def _send(self, m: Message) -> None:
        """Queue `m`; messages that promise durability wait for the driver to persist."""
        t = m.type
        # A forwarded transfer request keeps the transferee as its sender (etcd does the same).
        assert m.from_ == self.id or t == MT.TRANSFER_LEADER, (
            f"{t.name} from {m.from_} by {self.id}"
        )
        if t in (MT.PROP, MT.READ_INDEX):
            assert m.term == 0, f"{t.name} must be sent with term 0 (it is forwarded)"
        else:
            assert m.term != 0, f"{t.name} must carry a term"
        if t in (MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP):
            if t == MT.VOTE_RESP and PlantedBug.VOTE_BEFORE_PERSIST in self.bugs:
                self.msgs.append(m)
            else:
                self.msgs_after_append.append(m)
        else:
            self.msgs.append(m)

    def _msg(self, t: MessageType, to: int, **kw: object) -> Message:
        return Message(type=t, to=to, from_=self.id, term=self.term, **kw)  # type: ignore[arg-type]

    def _promotable(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None and not pr.is_learner and not self.raft_log.has_next_unstable_snapshot()
        )

    def _past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def _reset_randomized_election_timeout(self) -> None:
        self.randomized_election_timeout = self.election_timeout + self.rng.randrange(
            self.election_timeout
        )

    def _committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term(self.raft_log.committed) == self.term

    # -- roles -------------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self.term != term:
            assert term > self.term, f"term regresses from {self.term} to {term}"
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_election_timeout()
        self.lead_transferee = NONE
        self.lease_revoked = False
        self.trk.reset_votes()
        log = self.raft_log
        last = log.last_index()
        stable_last = log.unstable.offset - 1 if log.unstable.entries else last
        for node_id, pr in self.trk.visit():
            fresh = Progress(last + 1, self.trk.new_inflights(), is_learner=pr.is_learner)
            if node_id == self.id:
                # Only what is durable counts: unpersisted entries are self-acked after persist.
                fresh.match = stable_last
            self.trk.progress[node_id] = fresh
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.config.read_only_option)
        self.pending_read_index_messages = []
        self.snap_recv = None

    def _become_follower(self, term: int, lead: int) -> None:
        self._step_role = self._step_follower
        self._reset(term)
        self._tick_role = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def _become_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> candidate]"
        self._step_role = self._step_candidate
        self._reset(self.term + 1)
        self._tick_role = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def _become_pre_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> pre-candidate]"
        # Pre-vote changes neither term nor vote (thesis §9.6).
        self._step_role = self._step_candidate
        self.trk.reset_votes()
        self._tick_role = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def _become_leader(self) -> None:
        assert self.state != StateType.FOLLOWER, "invalid transition [follower -> leader]"
        self._step_role = self._step_leader
        self._reset(self.term)
        self._tick_role = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Conf changes in the uncommitted tail may still be pending: hold new ones until then.
        self.pending_conf_index = self.raft_log.last_index()
        if PlantedBug.COMMIT_PREVIOUS_TERM_BY_COUNT in self.bugs:
            # The Figure 8 setting: no current-term entry to commit the old ones with.
            return
        accepted = self._append_entry([Entry(term=0, index=0)])
        assert accepted, "empty entry was dropped"

    # -- ticks -------------------------------------------------------------------------------

    def tick(self) -> None:
        self.tick_count += 1
        self._tick_role()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self._past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP, to=self.id, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM, to=self.id, from_=self.id))
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.lead_transferee = NONE
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT, to=self.id, from_=self.id))

    # -- step: the term preamble shared by all roles -----------------------------------------

    def step(self, m: Message) -> None:
        if m.term == 0:
            pass
        elif m.term > self.term:
            if not self._step_higher_term(m):
                return
        elif m.term < self.term:
            self._step_lower_term(m)
            return

        t = m.type
        if t == MT.HUP:
            self._hup(transfer=False)
        elif t in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        else:
            self._step_role(m)

    def _step_higher_term(self, m: Message) -> bool:
        """Adopt a higher term if `m` warrants it; False if `m` is to be ignored."""
        t = m.type
        if t in (MT.VOTE, MT.PRE_VOTE):
            force = m.context == CAMPAIGN_TRANSFER
            in_lease = (
                self.check_quorum
                and self.lead != NONE
                and self.election_elapsed < self.election_timeout
            ) or (self.lease_after_restart and self.tick_count < self.election_timeout)
            if not force and in_lease:
                # We heard from a live leader within the minimum election timeout: do not let
                # a partitioned node disrupt it (thesis §4.2.3). This is what leases rely on.
                return False
        if t == MT.PRE_VOTE or (t == MT.PRE_VOTE_RESP and not m.reject):
            # A pre-vote never changes our term; a granted pre-vote response carries the
            # future term and is counted by the pre-candidate as is.
            return True
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self._become_follower(m.term, m.from_)
        else:
            self._become_follower(m.term, NONE)
        return True

    def _step_lower_term(self, m: Message) -> None:
        t = m.type
        if (self.check_quorum or self.pre_vote) and t in (MT.HEARTBEAT, MT.APP):
            # A stale leader (e.g. after a partition healed): tell it our term so it steps down.
            # Without this, with check-quorum or pre-vote, it might never learn of it.
            self._send(self._msg(MT.APP_RESP, m.from_))
        elif t == MT.PRE_VOTE:
            self._send(self._msg(MT.PRE_VOTE_RESP, m.from_, reject=True))

    def _handle_vote_request(self, m: Message) -> None:
        log = self.raft_log
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        resp = _vote_resp_type(m.type)
        if can_vote and log.is_up_to_date(m.index, m.log_term):
            # The grant carries the candidate's term so that it recognises the answer.
            self._send(Message(type=resp, to=m.from_, from_=self.id, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self._send(self._msg(resp, m.from_, reject=True))

    # -- elections ---------------------------------------------------------------------------

    def _hup(self, *, transfer: bool) -> None:
        if self.state == StateType.LEADER or not self._promotable():
            return
        if self._has_unapplied_conf_changes():
            # Campaigning now could elect a leader with a stale configuration.
            return
        if transfer:
            self._campaign(MT.VOTE, transfer=True)
        else:
            self._campaign(MT.PRE_VOTE if self.pre_vote else MT.VOTE, transfer=False)

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.raft_log
        if log.applied >= log.committed:
            return False
        lo = max(log.applied + 1, log.first_index())
        try:
            ents = log.slice(lo, log.committed + 1, 1 << 62)
        except CompactedError:
            return False
        return any(e.type == EntryType.CONF_CHANGE for e in ents)

    def _campaign(self, vote_type: MessageType, *, transfer: bool) -> None:
        if vote_type == MT.PRE_VOTE:
            self._become_pre_candidate()
            term = self.term + 1
        else:
            self._become_candidate()
            term = self.term
        if self._poll(self.id, True) == VoteResult.WON:
            # A single-voter configuration wins at once.
            if vote_type == MT.PRE_VOTE:
                self._campaign(MT.VOTE, transfer=False)
            else:
                self._become_leader()
            return
        log = self.raft_log
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for node_id in self.trk.voter_nodes():
            if node_id == self.id:
                continue
            self._send(
                Message(
                    type=vote_type,
                    to=node_id,
                    from_=self.id,
                    term=term,
                    index=log.last_index(),
                    log_term=log.last_term(),
                    context=ctx,
                )
            )

    def _poll(self, node_id: int, granted: bool) -> VoteResult:
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()[2]

    # -- candidate ---------------------------------------------------------------------------

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if t == MT.PROP:
            raise ProposalDroppedError("no leader (election in progress)")
        if t == MT.READ_INDEX:
            if m.from_ == self.id:
                raise ProposalDroppedError("no leader (election in progress)")
        elif t == MT.APP:
            self._become_follower(m.term, m.from_)
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self._become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self._become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            res = self._poll(m.from_, not m.reject)
            if res == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(MT.VOTE, transfer=False)
                else:
                    self._become_leader()
                    self._bcast_append()
            elif res == VoteResult.LOST:
                # Pre-candidates revert to their current term; candidates keep the new one.
                self._become_follower(self.term, NONE)

    # -- follower ----------------------------------------------------------------------------

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            if self.lead == NONE:
                raise ProposalDroppedError("no leader")
            if self.config.disable_proposal_forwarding:
                raise NotLeaderError(self.lead)
            self._send(msgspec.structs.replace(m, to=self.lead, from_=self.id))
        elif t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.election_elapsed = 0
            self.lead = m.from_
            if t == MT.APP:
                self._handle_append(m)
            elif t == MT.HEARTBEAT:
                self._handle_heartbeat(m)
            else:
                self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._send(msgspec.structs.replace(m, to=self.lead, term=self.term))
        elif t == MT.TIMEOUT_NOW:
            # Leadership transfer never uses pre-vote: the leader asked us to campaign now.
            self._hup(transfer=True)
        elif t == MT.READ_INDEX:
            if self.lead == NONE:
                if m.from_ == self.id:
                    raise ProposalDroppedError("no leader to confirm the read")
                return
            self._send(msgspec.structs.replace(m, to=self.lead, from_=self.id))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(index=m.index, request_ctx=m.context))

    def _handle_append(self, m: Message) -> None:
        log = self.raft_log
        if m.index < log.committed:
            self._send(self._msg(MT.APP_RESP, m.from_, index=log.committed))
            return
        if PlantedBug.APPEND_WITHOUT_PREV_TERM_CHECK in self.bugs and m.index <= log.last_index():
            last_new: int | None = log.append_after_match(m.index, m.commit, m.entries)
        else:
            last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(self._msg(MT.APP_RESP, m.from_, index=last_new))
            return
        # Reject, with a hint that lets the leader skip a whole term per round trip: the
        # largest index <= m.index whose term is <= m.log_term (etcd's findConflictByTerm).
        hint_index, hint_term = log.find_conflict_by_term(
            min(m.index, log.last_index()), m.log_term
        )
        self._send(
            self._msg(
                MT.APP_RESP,
                m.from_,
                index=m.index,
                reject=True,
                reject_hint=hint_index,
                log_term=hint_term,
            )
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(min(m.commit, self.raft_log.last_index()))
        self._send(
            self._msg(MT.HEARTBEAT_RESP, m.from_, context=m.context, lease_tick=m.lease_tick)
        )

    def _handle_snapshot(self, m: Message) -> None:
        chunk = m.snapshot
        if chunk is None:
            return
        if chunk.metadata.index <= self.raft_log.committed:
            # A late copy of a chunk of a snapshot we already installed (or that our log already
            # covers): say where we are, as `_restore` does for a stale snapshot, rather than
            # rejecting it and making the leader restart the transfer from offset 0.
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.raft_log.committed))
            return
        buf = self.snap_recv
        if chunk.offset == 0:
            buf = (chunk.metadata, bytearray())
        if buf is None or buf[0] != chunk.metadata or chunk.offset > len(buf[1]):
            have = len(buf[1]) if buf is not None and buf[0] == chunk.metadata else 0
            self._send(self._msg(MT.SNAP_RESP, m.from_, index=have, reject=True))
            return
        data = buf[1]
        del data[chunk.offset :]
        data += chunk.data
        if not chunk.done:
            self.snap_recv = buf
            self._send(self._msg(MT.SNAP_RESP, m.from_, index=len(data)))
            return
        self.snap_recv = None
        snap = Snapshot(metadata=chunk.metadata, data=bytes(data))
        if self._restore(snap):
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.raft_log.last_index()))
        else:
            self._send(self._msg(MT.APP_RESP, m.from_, index=self.raft_log.committed))

    def _restore(self, snap: Snapshot) -> bool:
        """Install a leader's snapshot; False if it is stale or already covered by our log."""
        meta = snap.metadata
        log = self.raft_log
        if meta.index <= log.committed:
            return False
        cs = meta.conf_state
        if self.id not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
            # A snapshot whose configuration lacks us would leave us unable to act sensibly.
            return False
        if log.match_term(meta.index, meta.term):
            # Our log already has the snapshot's last entry: just fast-forward the commit.
            log.commit_to(meta.index)
            return False
        log.restore(snap)
        self.trk = ProgressTracker(self.config.max_inflight_msgs, self.config.max_inflight_bytes)
        confchange.restore(self.trk, log.last_index(), cs)
        self._switch_to_config(self.trk.config, self.trk.progress)
        return True

    # -- leader ------------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat(self.read_only.last_pending_request_ctx())
            return
        if t == MT.CHECK_QUORUM:
            if not self.trk.quorum_active():
                self._become_follower(self.term, NONE)
            for node_id, peer in self.trk.visit():
                if node_id != self.id:
                    peer.recent_active = False
            return
        if t == MT.PROP:
            self._leader_propose(m)
            return
        if t == MT.READ_INDEX:
            self._leader_read_index(m)
            return
        pr = self.trk.progress.get(m.from_)
        if pr is None:
            return
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == MT.SNAP_RESP:
            pr.recent_active = True
            if pr.state == ProgressState.SNAPSHOT and pr.snapshot_in_flight is not None:
                have = min(m.index, len(pr.snapshot_in_flight.data))
                # Send the next chunk only when the follower made progress (or asks to rewind):
                # a chunk re-sent after a heartbeat is acknowledged twice, and answering both
                # acks would start a second stream, and another one at every heartbeat.
                if m.reject or have > pr.snapshot_acked:
                    pr.snapshot_acked = have
                    self._send_snapshot_chunk(m.from_, pr)
        elif t == MT.UNREACHABLE:
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._leader_transfer(m.from_, pr)

    def _leader_propose(self, m: Message) -> None:
        if not m.entries:
            raise ProposalDroppedError("empty proposal")
        if self.id not in self.trk.progress:
            raise ProposalDroppedError("leader was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDroppedError(f"leadership transfer to {self.lead_transferee} in progress")
        ents = list(m.entries)
        for i, e in enumerate(ents):
            if e.type != EntryType.CONF_CHANGE:
                continue
            cc = _decode_conf_change(e.data)
            already_pending = self.pending_conf_index > self.raft_log.applied
            already_joint = self.trk.config.voters.is_joint()
            wants_leave = cc.leave_joint()
            if already_pending or already_joint != wants_leave or not self._is_valid_change(cc):
                # Refuse without failing the batch: the entry becomes a no-op.
                ents[i] = Entry(term=0, index=0)
            else:
                self.pending_conf_index = self.raft_log.last_index() + i + 1
        if not self._append_entry(ents):
            raise ProposalDroppedError("too many uncommitted entries")
        self._bcast_append()

    def _append_entry(self, es: Sequence[Entry]) -> bool:
        log = self.raft_log
        li = log.last_index()
        term = self.term
        if self.max_uncommitted_size:
            size = sum(len(e.data) for e in es)
            if (
                self.uncommitted_size > 0
                and size > 0
                and (self.uncommitted_size + size > self.max_uncommitted_size)
            ):
                return False
            self.uncommitted_size += size
        ents = [
            Entry(term=term, index=li + 1 + i, type=e.type, data=e.data) for i, e in enumerate(es)
        ]
        li = log.append(ents)
        # The leader acks its own entries once they are durable (thesis §10.2.1).
        self._send(Message(type=MT.APP_RESP, to=self.id, from_=self.id, term=term, index=li))
        return True

    def reduce_uncommitted_size(self, ents: Sequence[Entry]) -> None:
        if self.uncommitted_size == 0:
            return
        size = sum(len(e.data) for e in ents)
        self.uncommitted_size = max(0, self.uncommitted_size - size)

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.from_, send_if_empty=True)
            return
        was_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT:
            if pr.match + 1 >= self.raft_log.first_index():
                pr.become_probe()
                pr.become_replicate()
            elif pr.match >= pr.pending_snapshot:
                # The follower installed the snapshot, but we compacted past it meanwhile. Probe
                # again: the probe finds the entries gone and sends a newer snapshot. Staying in
                # SNAPSHOT would re-send the old one forever (etcd leaves this state through
                # ReportSnapshot; our in-band acks are the only signal).
                pr.become_probe()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self._bcast_append()
        elif was_paused and m.from_ != self.id:
            self._maybe_send_append(m.from_, send_if_empty=True)
        if m.from_ != self.id:
            while self._maybe_send_append(m.from_, send_if_empty=False):
                pass
            if m.from_ == self.lead_transferee and pr.match == self.raft_log.last_index():
                self._send(self._msg(MT.TIMEOUT_NOW, m.from_))

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        pr.lease_tick = max(pr.lease_tick, m.lease_tick)
        if pr.state == ProgressState.SNAPSHOT:
            # Resend the chunk the follower last asked for, in case it was lost.
            if pr.snapshot_in_flight is not None:
                self._send_snapshot_chunk(m.from_, pr)
        elif pr.match < self.raft_log.last_index() or pr.state == ProgressState.PROBE:
            self._maybe_send_append(m.from_, send_if_empty=True)
        if not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or self.trk.config.voters.vote_result(acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            self._answer_read_index(rs.req, rs.index)

    def _maybe_commit(self) -> bool:
        log = self.raft_log
        mci = self.trk.committed()
        if PlantedBug.COMMIT_PREVIOUS_TERM_BY_COUNT in self.bugs:
            # The Figure 8 mistake: commit whatever a quorum stores, whatever its term.
            if mci > log.committed:
                log.commit_to(min(mci, log.last_index()))
                return True
            return False
        return log.maybe_commit(mci, self.term)

    def _maybe_send_append(self, to: int, *, send_if_empty: bool) -> bool:
        """Send entries (or a snapshot) to `to` if its window allows; True if a message went."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        log = self.raft_log
        prev_index = pr.next - 1
        prev_term = log.term(prev_index)
        try:
            if prev_term == 0 and prev_index > 0:
                raise CompactedError(f"term of {prev_index} is unknown")
            if pr.state == ProgressState.REPLICATE and pr.inflights.full():
                # Throttled (a heartbeat response unpaused us): send only an empty append. If
                # every in-flight append was lost, its ack or reject is what frees the window;
                # sending entries would overflow it (etcd's maybeSendAppend does the same).
                ents = []
            else:
                ents = log.entries(pr.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            return self._maybe_send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        nbytes = sum(len(e.data) for e in ents) if self.trk.max_inflight_bytes else 0
        self._send(
            self._msg(
                MT.APP,
                to,
                index=prev_index,
                log_term=prev_term,
                entries=ents,
                commit=log.committed,
            )
        )
        pr.sent_entries(len(ents), nbytes)
        return True

    def _maybe_send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        try:
            snap = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            return False
        assert not snap.is_empty(), "need a non-empty snapshot to send"
        cs = snap.metadata.conf_state
        if to not in (*cs.voters, *cs.learners, *cs.voters_outgoing):
            # The snapshot predates `to` joining: it would refuse it (see `_restore`) and we
            # would wait in SNAPSHOT state forever. Treat it as not available yet and try
            # again later, when storage has a snapshot that includes `to`.
            return False
        pr.become_snapshot(snap)
        self._send_snapshot_chunk(to, pr)
        return True

    def _send_snapshot_chunk(self, to: int, pr: Progress) -> None:
        snap = pr.snapshot_in_flight
        assert snap is not None, "no snapshot in flight"
        off = pr.snapshot_acked
        data = snap.data[off : off + self.config.snapshot_chunk_bytes]
        chunk = SnapshotChunk(
            metadata=snap.metadata, offset=off, data=data, done=off + len(data) >= len(snap.data)
        )
        self._send(self._msg(MT.SNAP, to, snapshot=chunk))

    def _bcast_append(self) -> None:
        for node_id, _ in self.trk.visit():
            if node_id != self.id:
                self._maybe_send_append(node_id, send_if_empty=True)

    def _bcast_heartbeat(self, ctx: bytes) -> None:
        committed = self.raft_log.committed
        for node_id, pr in self.trk.visit():
            if node_id == self.id:
                continue
            self._send(
                self._msg(
                    MT.HEARTBEAT,
                    node_id,
                    commit=min(pr.match, committed),
                    context=ctx,
                    lease_tick=self.tick_count,
                )
            )

    def _leader_transfer(self, transferee: int, pr: Progress) -> None:
        if pr.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.lead_transferee = NONE
        if transferee == self.id:
            return
        self.election_elapsed = 0
        self.lead_transferee = transferee
        # The transferee may campaign past our followers' leases: our lease ends now.
        self.lease_revoked = True
        if pr.match == self.raft_log.last_index():
            self._send(self._msg(MT.TIMEOUT_NOW, transferee))
        else:
            self._maybe_send_append(transferee, send_if_empty=True)

    # -- linearizable reads --------------------------------------------------------------------

    def _leader_read_index(self, m: Message) -> None:
        if self.trk.is_singleton():
            self._answer_read_index(m, self.raft_log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Our commit index may lag the previous leader's until our no-op commits (§6.4).
            self.pending_read_index_messages.append(m)
            return
        self._send_read_index_response(m)

    def _send_read_index_response(self, m: Message) -> None:
        if self.config.read_only_option == ReadOnlyOption.LEASE_BASED and self._lease_valid():
            self._answer_read_index(m, self.raft_log.committed)
            return
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, m.context)
        self._bcast_heartbeat(m.context)

    def _lease_valid(self) -> bool:
        """Whether no other leader can exist yet: a quorum confirmed us recently enough."""
        if PlantedBug.LEASE_WITHOUT_QUORUM in self.bugs:
            return True
        if self.lease_revoked:
            return False
        now = self.tick_count
        me = self.trk.progress.get(self.id)
        start = self.trk.quorum_value(lambda pr: now if pr is me else pr.lease_tick)
        return now - start < self.election_timeout - self.config.lease_drift_ticks

    def _answer_read_index(self, req: Message, index: int) -> None:
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(index=index, request_ctx=req.context))
        else:
            self._send(self._msg(MT.READ_INDEX_RESP, req.from_, index=index, context=req.context))

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._send_read_index_response(m)

    def local_read_index(self, ctx: bytes) -> None:
        """PlantedBug.STALE_LOCAL_READS: answer a read at our own commit index, no questions."""
        self.read_states.append(ReadState(index=self.raft_log.committed, request_ctx=ctx))

    # -- membership --------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self._switch_to_config(*self._changed_config(cc))

    def _changed_config(self, cc: ConfChange) -> tuple[TrackerConfig, dict[int, Progress]]:
        """The configuration `cc` leads to from the current one; raises ConfigError if invalid."""
        changer = confchange.Changer(self.trk, self.raft_log.last_index())
        if cc.leave_joint():
            return changer.leave_joint()
        use_joint, auto_leave = cc.enter_joint()
        if use_joint:
            return changer.enter_joint(auto_leave, cc.changes)
        return changer.simple(cc.changes)

    def _is_valid_change(self, cc: ConfChange) -> bool:
        # Only called when no other conf change is pending, so the configuration this entry
        # will be applied to is the current one. An invalid change (e.g. removing the last
        # voter) must be refused now: once committed, every node would fail to apply it.
        try:
            self._changed_config(cc)
        except ConfigError:
            return False
        return True

    def _switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        self.trk.config = cfg
        self.trk.progress = prs
        cs = self.trk.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            if self.config.step_down_on_removal:
                self._become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self._maybe_commit():
            self._bcast_append()
        else:
            for node_id, _ in self.trk.visit():
                if node_id != self.id:
                    self._maybe_send_append(node_id, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.trk.config.voters:
            self.lead_transferee = NONE
        return cs

    def applied_to(self, index: int) -> None:
        self.raft_log.applied_to(index)
        if (
            self.trk.config.auto_leave
            and index >= self.pending_conf_index
            and self.state == StateType.LEADER
        ):
            # The joint configuration we entered is now applied: leave it automatically.
            leave = Entry(term=0, index=0, type=EntryType.CONF_CHANGE, data=_encode(ConfChange()))
            self.pending_conf_index = 0
            try:
                self.step(Message(type=MT.PROP, to=self.id, from_=self.id, entries=[leave]))
            except ProposalDroppedError:
                # Retried on the next apply (e.g. after a leadership transfer finishes).
                self.pending_conf_index = index
