"""One shard's replicated key-value state: values with per-key revisions and client sessions.

Revisions: a key's revision is the Raft index of the command that last wrote it, so it is the
same on every replica and increases with every write (etcd's mod_revision). Compare-and-set
compares against that revision. Sessions: the last `seq` applied per client and its result;
a retried command with that `seq` gets the stored result and is not applied again (Raft
thesis §6.3), and an older `seq` is a stale duplicate and is ignored. Sessions are bounded
(least recently used evicted) and travel in snapshots. Pure: no clock, no I/O.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable

import msgspec

from quorumdb.kv.commands import Command, CommandKind, Outcome, Result, decode_command

__all__ = ["SESSIONS_MAX", "KVStateMachine"]

SESSIONS_MAX = 100_000


class _Image(msgspec.Struct, array_like=True):
    applied: int
    keys: list[bytes]
    values: list[bytes]
    revisions: list[int]
    sessions: list[tuple[int, int, Result]]


_encode_image = msgspec.msgpack.Encoder().encode
_decode_image = msgspec.msgpack.Decoder(_Image).decode


class KVStateMachine:
    __slots__ = ("_keys", "applied", "data", "dedupe", "observer", "sessions")

    # In memory, and applying only answers clients: the host may apply it mid-flight.
    applies_midflight = True

    def __init__(
        self, observer: Callable[[Command, Result], None] | None = None, *, dedupe: bool = True
    ) -> None:
        """`dedupe=False` is the planted bug `SESSION_CHECK_DROPPED` (tests only): a command
        retried with the same (client, seq) applies again instead of being answered from
        its session."""
        self.observer = observer
        self.dedupe = dedupe
        self.data: dict[bytes, tuple[bytes, int]] = {}
        self._keys: list[bytes] = []  # sorted, for range scans
        self.sessions: OrderedDict[int, tuple[int, Result]] = OrderedDict()
        self.applied = 0

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Result] | None:
        """`ReplicatedStateMachine`: decode and apply; answer the (client, seq) request."""
        cmd = decode_command(data)
        result = self.apply(index, cmd)
        if result is None:
            return None
        if self.observer is not None:
            self.observer(cmd, result)
        return (cmd.client, cmd.seq), result

    def apply(self, index: int, cmd: Command) -> Result | None:
        """Apply the command at log `index`; None if it is a stale duplicate (ignored)."""
        assert index > self.applied, f"apply index {index} after {self.applied}"
        self.applied = index
        if cmd.client and self.dedupe:
            seen = self.sessions.get(cmd.client)
            if seen is not None:
                if cmd.seq == seen[0]:
                    self.sessions.move_to_end(cmd.client)
                    return seen[1]
                if cmd.seq < seen[0]:
                    return None
        result = self._execute(index, cmd)
        if cmd.client:
            self.sessions[cmd.client] = (cmd.seq, result)
            self.sessions.move_to_end(cmd.client)
            if len(self.sessions) > SESSIONS_MAX:
                self.sessions.popitem(last=False)
        return result

    def skip(self, index: int) -> None:
        """Record that `index` held no KV command (a no-op or a membership change)."""
        self.applied = max(self.applied, index)

    def _execute(self, index: int, cmd: Command) -> Result:
        current = self.data.get(cmd.key)
        rev = current[1] if current is not None else 0
        if cmd.kind == CommandKind.PUT:
            self._set(cmd.key, cmd.value, index, existed=current is not None)
            return Result(outcome=Outcome.OK, revision=index, previous_revision=rev)
        if cmd.kind == CommandKind.DELETE:
            if current is None:
                return Result(outcome=Outcome.NOT_FOUND, revision=0)
            del self.data[cmd.key]
            i = bisect.bisect_left(self._keys, cmd.key)
            del self._keys[i]
            return Result(outcome=Outcome.OK, revision=0, previous_revision=rev)
        if rev != cmd.expected_revision:
            return Result(outcome=Outcome.CAS_FAILED, revision=rev)
        self._set(cmd.key, cmd.value, index, existed=current is not None)
        return Result(outcome=Outcome.OK, revision=index, previous_revision=rev)

    def _set(self, key: bytes, value: bytes, index: int, *, existed: bool) -> None:
        self.data[key] = (value, index)
        if not existed:
            bisect.insort(self._keys, key)

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: bytes) -> tuple[bytes, int] | None:
        return self.data.get(key)

    def scan(self, start: bytes, end: bytes | None, limit: int) -> list[tuple[bytes, bytes, int]]:
        """Keys in [start, end) in order, at most `limit`: (key, value, revision)."""
        keys = self._keys
        i = bisect.bisect_left(keys, start)
        out: list[tuple[bytes, bytes, int]] = []
        while i < len(keys) and len(out) < limit:
            k = keys[i]
            if end is not None and k >= end:
                break
            v, r = self.data[k]
            out.append((k, v, r))
            i += 1
        return out

    def __len__(self) -> int:
        return len(self.data)

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        keys = self._keys
        data = self.data
        return _encode_image(
            _Image(
                applied=self.applied,
                keys=keys,
                values=[data[k][0] for k in keys],
                revisions=[data[k][1] for k in keys],
                sessions=[(c, s, r) for c, (s, r) in self.sessions.items()],
            )
        )

    def restore(self, image: bytes) -> None:
        img = _decode_image(image) if image else _Image(0, [], [], [], [])
        self.applied = img.applied
        self._keys = list(img.keys)
        self.data = {k: (v, r) for k, v, r in zip(img.keys, img.values, img.revisions, strict=True)}
        self.sessions = OrderedDict((c, (s, r)) for c, s, r in img.sessions)
