"""KVStateMachine against a dict model: registers, CAS, and at-most-once client sessions.

Commands go through the log codec (`encode_command`/`decode_command`) as they do in the
simulator. A retry of a client's latest (client, seq) must return the first result and change
nothing; an older seq is a stale retry (None, no change); a snapshot restored into a fresh
machine must behave exactly like the original from then on.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule

from quorumdb.sim.state_machine import (
    Command,
    KVStateMachine,
    Op,
    decode_command,
    encode_command,
)

clients = st.integers(1, 3)
keys = st.sampled_from(["a", "b"])
values = st.integers(0, 3)
maybe_values = st.none() | values


class KVModel(RuleBasedStateMachine):
    commands = Bundle("commands")

    def __init__(self) -> None:
        super().__init__()
        self.sm = KVStateMachine()
        self.data: dict[str, int] = {}
        self.last_seq: dict[int, int] = {}
        self.first_result: dict[tuple[int, int], bool] = {}

    def _apply(self, cmd: Command) -> bool | None:
        wire = encode_command(cmd)
        assert decode_command(wire) == cmd
        return self.sm.apply(decode_command(wire))

    def _new(
        self,
        client: int,
        gap: int,
        op: Op,
        key: str,
        *,
        value: int | None = None,
        expected: int | None = None,
    ) -> Command:
        cmd = Command(client, self.last_seq.get(client, 0) + gap, op, key, value, expected)
        ok = True
        if op == Op.DELETE:
            self.data.pop(key, None)
        elif op == Op.PUT or self.data.get(key) == expected:
            assert value is not None
            self.data[key] = value
        else:
            ok = False
        assert self._apply(cmd) is ok
        self.last_seq[client] = cmd.seq
        self.first_result[(client, cmd.seq)] = ok
        return cmd

    @rule(target=commands, client=clients, gap=st.integers(1, 2), key=keys, value=values)
    def put(self, client: int, gap: int, key: str, value: int) -> Command:
        return self._new(client, gap, Op.PUT, key, value=value)

    @rule(
        target=commands,
        client=clients,
        gap=st.integers(1, 2),
        key=keys,
        value=values,
        expected=maybe_values,
    )
    def cas(self, client: int, gap: int, key: str, value: int, expected: int | None) -> Command:
        return self._new(client, gap, Op.CAS, key, value=value, expected=expected)

    @rule(target=commands, client=clients, gap=st.integers(1, 2), key=keys)
    def delete(self, client: int, gap: int, key: str) -> Command:
        return self._new(client, gap, Op.DELETE, key)

    @rule(cmd=commands, other_value=values)
    def retry(self, cmd: Command, other_value: int) -> None:
        # A retry carries the same (client, seq); even if its body differed it must not apply.
        if cmd.op != Op.DELETE:
            cmd = Command(cmd.client, cmd.seq, cmd.op, cmd.key, other_value, cmd.expected)
        before = dict(self.sm.data)
        result = self._apply(cmd)
        if cmd.seq == self.last_seq[cmd.client]:
            assert result is self.first_result[(cmd.client, cmd.seq)], "the first result"
        else:
            assert cmd.seq < self.last_seq[cmd.client]
            assert result is None, "a stale seq is answered None"
        assert self.sm.data == before, "a retry applies nothing"

    @rule()
    def snapshot_and_restore(self) -> None:
        image = self.sm.snapshot()
        restored = KVStateMachine()
        restored.restore(image)
        assert restored.data == self.sm.data
        assert restored.sessions == self.sm.sessions
        assert restored.snapshot() == image
        self.sm = restored  # later retries must still be recognised after a restore

    @rule(key=keys)
    def read(self, key: str) -> None:
        assert self.sm.read(key) == self.data.get(key)

    @invariant()
    def data_matches_the_model(self) -> None:
        assert self.sm.data == self.data

    @invariant()
    def sessions_hold_each_clients_last_seq_and_result(self) -> None:
        assert self.sm.sessions == {
            c: (seq, self.first_result[(c, seq)]) for c, seq in self.last_seq.items()
        }


KVModel.TestCase.settings = settings(
    max_examples=80, stateful_step_count=40, derandomize=True, deadline=None
)
TestKVModel = KVModel.TestCase


def test_restoring_an_empty_image_resets_the_machine() -> None:
    sm = KVStateMachine()
    assert sm.apply(Command(1, 1, Op.PUT, "a", value=5)) is True
    sm.restore(b"")
    assert sm.data == {}
    assert sm.sessions == {}
    # With the session gone, the same (client, seq) is new again.
    assert sm.apply(Command(1, 1, Op.PUT, "a", value=6)) is True
    assert sm.read("a") == 6


def test_a_failed_cas_is_remembered_as_failed() -> None:
    sm = KVStateMachine()
    assert sm.apply(Command(1, 1, Op.CAS, "a", value=1, expected=7)) is False
    assert sm.apply(Command(2, 1, Op.PUT, "a", value=7)) is True
    assert sm.apply(Command(1, 1, Op.CAS, "a", value=1, expected=7)) is False, "not re-run"
    assert sm.read("a") == 7
