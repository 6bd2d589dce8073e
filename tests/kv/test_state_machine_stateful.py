"""`kv.state_machine.KVStateMachine` against a dict model, as a hypothesis state machine.

Every command goes through the log codec (`encode_command` -> `apply_entry`) at a growing
Raft index, as the host applies it. The model is a plain dict of key -> (value, revision)
plus an ordered table of client sessions (client -> (last seq, its result)), least recently
used first. Rules: PUT / CAS / DELETE from a fresh (client, seq) or from no session
(client 0), retries of earlier requests (the latest seq of a client answers the stored
result and applies nothing; an older one is a stale duplicate: None), skipped indexes
(no-ops, membership changes), scans of random ranges, and snapshot + restore into another
machine (fresh, or one holding unrelated state): the restored machine becomes the primary
and the old ones stay as twins, fed the same commands, which must answer identically.

`TestKVStateMachineEviction` runs the same rules with `SESSIONS_MAX` patched down to 2, so
sessions are evicted least recently used first, as the module docstring says; a retry of an
evicted client's request is then applied again, which the model predicts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import quorumdb.kv.state_machine as kv_state_machine
from quorumdb.kv.commands import (
    Command,
    CommandKind,
    Outcome,
    Result,
    decode_command,
    encode_command,
)
from quorumdb.kv.state_machine import KVStateMachine

# Keys chosen so that prefixes, the empty key and high bytes all meet in scans.
KEYS = [b"", b"a", b"a\x00", b"ab", b"b", b"\xff"]
BOUNDS = [*KEYS, b"aa", b"c", b"\xff\xff"]

keys = st.sampled_from(KEYS)
values = st.binary(max_size=3)
gaps = st.integers(1, 2)

MACHINES_MAX = 3  # the primary and up to two twins (machines it was restored from)


def _same_answer(got: Result | None, want: Result | None) -> bool:
    """Equal outcome and revision; `previous_revision` is only promised for OK."""
    if got is None or want is None:
        return got is want
    if (got.outcome, got.revision) != (want.outcome, want.revision):
        return False
    return want.outcome != Outcome.OK or got.previous_revision == want.previous_revision


class KVStateMachineModel(RuleBasedStateMachine):
    clients = st.integers(0, 3)  # 0: no session
    sessions_max: int | None = None  # None: the module's (never reached here)

    def __init__(self) -> None:
        super().__init__()
        self._saved_sessions_max = kv_state_machine.SESSIONS_MAX
        if self.sessions_max is not None:
            kv_state_machine.SESSIONS_MAX = self.sessions_max
        self.observed: list[tuple[int, Command, Result]] = []
        self.machines: list[KVStateMachine] = [self._new_machine()]
        self.index = 0
        self.model: dict[bytes, tuple[bytes, int]] = {}
        self.sessions: OrderedDict[int, tuple[int, Result]] = OrderedDict()
        self.last_seq: dict[int, int] = {}
        self.sent: list[Command] = []  # requests with a session, for retries
        self.first_result: dict[tuple[int, int], Result] = {}
        self.executions: dict[tuple[int, int], int] = {}
        self.last_write_revision = 0

    def teardown(self) -> None:
        kv_state_machine.SESSIONS_MAX = self._saved_sessions_max

    def _new_machine(self) -> KVStateMachine:
        sm: KVStateMachine

        def observe(cmd: Command, result: Result) -> None:
            self.observed.append((id(sm), cmd, result))

        sm = KVStateMachine(observe)
        return sm

    @property
    def sm(self) -> KVStateMachine:
        return self.machines[0]

    # -- the model ---------------------------------------------------------------------------

    def _model_execute(self, index: int, cmd: Command) -> Result:
        current = self.model.get(cmd.key)
        rev = current[1] if current is not None else 0
        if cmd.kind == CommandKind.DELETE:
            if current is None:
                return Result(outcome=Outcome.NOT_FOUND, revision=0)
            del self.model[cmd.key]
            return Result(outcome=Outcome.OK, revision=0, previous_revision=rev)
        if cmd.kind == CommandKind.CAS and cmd.expected_revision != rev:
            return Result(outcome=Outcome.CAS_FAILED, revision=rev)
        self.model[cmd.key] = (cmd.value, index)
        return Result(outcome=Outcome.OK, revision=index, previous_revision=rev)

    def _model_apply(self, index: int, cmd: Command) -> tuple[Result | None, bool]:
        """The expected answer, and whether the command is executed."""
        if cmd.client:
            seen = self.sessions.get(cmd.client)
            if seen is not None:
                if cmd.seq == seen[0]:
                    self.sessions.move_to_end(cmd.client)
                    return seen[1], False
                if cmd.seq < seen[0]:
                    return None, False
        result = self._model_execute(index, cmd)
        if cmd.client:
            self.sessions[cmd.client] = (cmd.seq, result)
            self.sessions.move_to_end(cmd.client)
            limit = self.sessions_max or kv_state_machine.SESSIONS_MAX
            if len(self.sessions) > limit:
                self.sessions.popitem(last=False)
        return result, True

    # -- applying ----------------------------------------------------------------------------

    def _apply(self, cmd: Command, gap: int) -> tuple[Result | None, bool]:
        self.index += gap
        wire = encode_command(cmd)
        assert decode_command(wire) == cmd
        want, executes = self._model_apply(self.index, cmd)
        answers = []
        for sm in self.machines:
            self.observed.clear()
            out = sm.apply_entry(self.index, wire)
            result = None
            if out is not None:
                assert out[0] == (cmd.client, cmd.seq), "the answer goes to the request"
                result = out[1]
            if result is None:
                assert self.observed == [], "a stale duplicate notifies nobody"
            elif executes:
                assert self.observed == [(id(sm), cmd, result)], "the observer sees the write"
            else:
                assert all(o == (id(sm), cmd, result) for o in self.observed)
            answers.append(result)
        assert _same_answer(answers[0], want), f"{cmd} at {self.index}: {answers[0]} != {want}"
        assert all(a == answers[0] for a in answers), f"a restored machine differs: {answers}"
        key = (cmd.client, cmd.seq)
        if executes and cmd.client:
            self.executions[key] = self.executions.get(key, 0) + 1
        result = answers[0]
        written = executes and result is not None and result.outcome == Outcome.OK
        if written and cmd.kind != CommandKind.DELETE:
            assert result is not None
            assert result.revision > self.last_write_revision, "revisions increase"
            self.last_write_revision = result.revision
        return result, executes

    def _write(
        self, kind: CommandKind, client: int, gaps: tuple[int, int], key: bytes, **body: Any
    ) -> None:
        gap, seq_gap = gaps
        seq = self.last_seq.get(client, 0) + seq_gap if client else 0
        cmd = Command(kind=kind, key=key, client=client, seq=seq, **body)
        result, executes = self._apply(cmd, gap)
        assert executes, "a fresh request is applied"
        assert result is not None
        if client:
            self.last_seq[client] = seq
            self.sent.append(cmd)
            self.first_result[(client, seq)] = result

    @rule(client=clients, gaps=st.tuples(gaps, gaps), key=keys, value=values)
    def put(self, client: int, gaps: tuple[int, int], key: bytes, value: bytes) -> None:
        self._write(CommandKind.PUT, client, gaps, key, value=value)

    @rule(
        client=clients,
        gaps=st.tuples(gaps, gaps),
        key=keys,
        value=values,
        choice=st.integers(0, 5),
    )
    def cas(
        self, client: int, gaps: tuple[int, int], key: bytes, value: bytes, choice: int
    ) -> None:
        current = self.model.get(key)
        rev = current[1] if current is not None else 0
        # Mostly the current revision (0 when absent), else 0, stale, future, or -1.
        expected = [rev, rev, 0, max(rev - 1, 0), rev + 1, -1][choice]
        self._write(CommandKind.CAS, client, gaps, key, value=value, expected_revision=expected)

    @rule(client=clients, gaps=st.tuples(gaps, gaps), key=keys)
    def delete(self, client: int, gaps: tuple[int, int], key: bytes) -> None:
        self._write(CommandKind.DELETE, client, gaps, key)

    @precondition(lambda self: self.sent)
    @rule(data=st.data(), gap=gaps, other_value=st.none() | values)
    def retry(self, data: st.DataObject, gap: int, other_value: bytes | None) -> None:
        cmd = data.draw(st.sampled_from(self.sent), label="retried")
        if other_value is not None and cmd.kind != CommandKind.DELETE:
            # Deduplication is by (client, seq) alone, whatever the body says.
            cmd = Command(
                kind=cmd.kind,
                key=cmd.key,
                value=other_value,
                expected_revision=cmd.expected_revision,
                client=cmd.client,
                seq=cmd.seq,
            )
        key = (cmd.client, cmd.seq)
        session = self.sessions.get(cmd.client)
        before = _live(self.sm)
        result, executes = self._apply(cmd, gap)
        if session is not None and cmd.seq <= session[0]:
            # The session remembers the request: the retry must not apply again.
            assert not executes
            assert _live(self.sm) == before, "a retry applied again"
            if cmd.seq == session[0]:
                assert _same_answer(result, session[1]), "a retry answers the stored result"
                if self.sessions_max is None:
                    assert result == self.first_result[key], "...which is the first result"
            else:
                assert result is None, "a stale duplicate is ignored"
        else:
            # Only after the client's session was evicted (and maybe restarted by a retry
            # of an older seq) does a retry look new: it is applied again.
            assert self.sessions_max is not None, "a session forgot a request without eviction"
            assert executes, "an evicted client's request is new again"

    @rule(gap=gaps)
    def skip(self, gap: int) -> None:
        self.index += gap
        for sm in self.machines:
            sm.skip(self.index)

    @rule(
        start=st.sampled_from(BOUNDS),
        end=st.none() | st.sampled_from(BOUNDS),
        limit=st.integers(0, 7),
    )
    def scan(self, start: bytes, end: bytes | None, limit: int) -> None:
        want = [
            (k, v, r)
            for k, (v, r) in sorted(self.model.items())
            if k >= start and (end is None or k < end)
        ][:limit]
        for sm in self.machines:
            assert sm.scan(start, end, limit) == want

    @rule(dirty=st.booleans(), junk_key=keys)
    def snapshot_and_restore(self, dirty: bool, junk_key: bytes) -> None:
        image = self.sm.snapshot()
        restored = self._new_machine()
        if dirty:
            # Restore replaces everything: data, the sorted keys, sessions, applied.
            restored.apply(1, Command(kind=CommandKind.PUT, key=junk_key, value=b"junk"))
            restored.apply(2, Command(kind=CommandKind.PUT, key=b"zz", value=b"x", client=99))
        restored.restore(image)
        assert restored.applied == self.sm.applied
        assert restored.snapshot() == image
        self.machines = [restored, *self.machines][:MACHINES_MAX]

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def data_matches_the_model(self) -> None:
        everything = [(k, v, r) for k, (v, r) in sorted(self.model.items())]
        for sm in self.machines:
            assert _live(sm) == self.model
            assert len(sm) == len(self.model)
            for k in KEYS:
                assert sm.get(k) == self.model.get(k)
            assert sm.scan(b"", None, len(KEYS) + 1) == everything

    @invariant()
    def applied_is_the_last_index(self) -> None:
        for sm in self.machines:
            assert sm.applied == self.index

    @invariant()
    def sessions_match_the_model_in_lru_order(self) -> None:
        want = [(client, seq) for client, (seq, _) in self.sessions.items()]
        for sm in self.machines:
            assert [(client, seq) for client, (seq, _) in sm.sessions.items()] == want
            for client, (_, result) in sm.sessions.items():
                assert _same_answer(result, self.sessions[client][1])

    @invariant()
    def no_request_is_applied_twice_while_its_session_lasts(self) -> None:
        if self.sessions_max is None:
            assert all(n == 1 for n in self.executions.values())


class KVStateMachineEviction(KVStateMachineModel):
    clients = st.integers(0, 4)
    sessions_max = 2


KVStateMachineModel.TestCase.settings = settings(
    max_examples=200, stateful_step_count=50, derandomize=True, database=None, deadline=None
)
TestKVStateMachine = KVStateMachineModel.TestCase

KVStateMachineEviction.TestCase.settings = settings(
    max_examples=150, stateful_step_count=50, derandomize=True, database=None, deadline=None
)
TestKVStateMachineEviction = KVStateMachineEviction.TestCase


def test_restoring_an_empty_image_resets_the_machine() -> None:
    sm = KVStateMachine()
    put = Command(kind=CommandKind.PUT, key=b"a", value=b"1", client=1, seq=1)
    assert sm.apply(1, put) == Result(outcome=Outcome.OK, revision=1, ts=1)
    sm.restore(b"")
    assert (_live(sm), sm.sessions, sm.applied, sm.scan(b"", None, 9)) == ({}, {}, 0, [])
    # With the session gone, the same (client, seq) is a new request again.
    assert sm.apply(1, put) == Result(outcome=Outcome.OK, revision=1, ts=1)


def _live(sm: KVStateMachine) -> dict[bytes, tuple[bytes, int]]:
    """The machine's newest committed values: key -> (value, revision)."""
    return {k: (v, r) for k, v, r in sm.scan(b"", None, 1 << 30)}
