"""The Raft log as the core sees it: stable entries in `Storage` followed by `Unstable` ones.

Invariants (asserted): `applied <= committed <= last_index()`; `committed` never regresses;
nothing at or below `committed` is ever truncated. `applying` is how far committed entries have
been handed to the driver (in a `Ready`) but not yet confirmed applied.
"""

from __future__ import annotations

from quorumdb.raft.errors import CompactedError, UnavailableError
from quorumdb.raft.log_unstable import Unstable
from quorumdb.raft.messages import Entry, Snapshot
from quorumdb.raft.storage import Storage, limit_size

__all__ = ["NO_LIMIT", "RaftLog"]

NO_LIMIT = 1 << 62
"""A byte limit that never binds."""


class RaftLog:
    __slots__ = ("applied", "applying", "committed", "max_applying_bytes", "storage", "unstable")

    def __init__(self, storage: Storage, max_applying_bytes: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1
        self.max_applying_bytes = max_applying_bytes

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"applying={self.applying}, unstable.offset={self.unstable.offset}, "
            f"len(unstable)={len(self.unstable.entries)})"
        )

    # -- appending ------------------------------------------------------------------------

    def maybe_append(
        self, index: int, log_term: int, committed: int, ents: list[Entry]
    ) -> int | None:
        """Append `ents` after (index, log_term) if that entry matches; return the new last index.

        Returns None when the previous entry does not match (the caller rejects the append).
        """
        if not self.match_term(index, log_term):
            return None
        return self.append_after_match(index, committed, ents)

    def append_after_match(self, index: int, committed: int, ents: list[Entry]) -> int:
        """Append assuming entry `index` matches the leader's; commit up to `committed`."""
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            assert ci > self.committed, (
                f"entry {ci} conflicts with committed entry (committed {self.committed})"
            )
            self.append(ents[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry] | tuple[Entry, ...]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        assert after >= self.committed, (
            f"after {after} is out of range [committed {self.committed}]"
        )
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or is new); 0 if none."""
        last = self.last_index()
        for e in ents:
            if e.index > last or not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest (i, term_i) with i <= index and term_i <= term; the fast back-off hint."""
        while index > 0:
            t = self._term_or_none(index)
            if t is None:
                # Compacted or unavailable: the hint cannot go lower than what we know.
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # -- reading --------------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return self.unstable.entries

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def last_term(self) -> int:
        return self.term(self.last_index())

    def _term_or_none(self, i: int) -> int | None:
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i < self.first_index() - 1 or i > self.last_index():
            return None
        try:
            return self.storage.term(i)
        except (CompactedError, UnavailableError):
            return None

    def term(self, i: int) -> int:
        """Term of entry i; 0 if it is compacted away or beyond the end."""
        t = self._term_or_none(i)
        return 0 if t is None else t

    def match_term(self, i: int, term: int) -> bool:
        t = self._term_or_none(i)
        return t is not None and t == term

    def is_up_to_date(self, lasti: int, term: int) -> bool:
        """Raft §5.4.1: is a candidate's log (lasti, term) at least as up to date as ours?"""
        last_term = self.last_term()
        return term > last_term or (term == last_term and lasti >= self.last_index())

    def entries(self, i: int, max_bytes: int) -> list[Entry]:
        """Entries from i to the end, size-limited. Raises CompactedError below first_index."""
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_bytes)

    def all_entries(self) -> list[Entry]:
        return self.entries(self.first_index(), NO_LIMIT)

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries [lo, hi) from storage and unstable, at most `max_bytes` (at least one)."""
        if lo == hi:
            return []
        fi = self.first_index()
        if lo < fi:
            raise CompactedError(f"slice from {lo}: first index is {fi}")
        assert hi <= self.last_index() + 1, f"slice [{lo},{hi}) beyond last {self.last_index()}"
        off = self.unstable.offset
        if lo >= off:
            return limit_size(self.unstable.slice(lo, hi), max_bytes)
        stored = self.storage.entries(lo, min(hi, off), max_bytes)
        if hi <= off or len(stored) < off - lo:
            return stored
        return limit_size(stored + self.unstable.slice(off, hi), max_bytes)

    # -- commit and apply ------------------------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        if self.committed < to_commit:
            assert to_commit <= self.last_index(), (
                f"commit {to_commit} beyond last index {self.last_index()}"
            )
            self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to `max_index` if that entry has `term` (Raft §5.4.2)."""
        if max_index > self.committed and self.term(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def _max_appliable_index(self, allow_unstable: bool) -> int:
        if allow_unstable:
            return self.committed
        # Only what the driver reported durable: below the unstable entries and snapshot.
        if self.unstable.snapshot is not None:
            return 0
        return min(self.committed, self.unstable.offset - 1)

    def has_next_committed_entries(self, *, allow_unstable: bool = True) -> bool:
        if self.committed <= self.applying:
            return False
        hi = self._max_appliable_index(allow_unstable)
        return hi > self.applying and self.applying + 1 >= self.first_index()

    def next_committed_entries(self, *, allow_unstable: bool = True) -> list[Entry]:
        """Committed entries not yet handed out for applying, size-limited; with
        `allow_unstable` false, only those the driver has reported durable here."""
        if not self.has_next_committed_entries(allow_unstable=allow_unstable):
            return []
        lo = self.applying + 1
        hi = self._max_appliable_index(allow_unstable) + 1
        return self.slice(lo, hi, self.max_applying_bytes)

    def accept_applying(self, index: int) -> None:
        assert index <= self.committed, f"applying {index} beyond committed {self.committed}"
        self.applying = max(self.applying, index)

    def applied_to(self, index: int) -> None:
        if index <= self.applied:
            # Nothing new, or a snapshot installed meanwhile already moved `applied` past it.
            return
        assert self.applied <= index <= self.committed, (
            f"applied {index} out of range [{self.applied}, {self.committed}]"
        )
        self.applied = index
        self.applying = max(self.applying, index)

    def has_next_unstable_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def stable_to(self, index: int, term: int) -> None:
        self.unstable.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    def restore(self, snap: Snapshot) -> None:
        """Replace the log with a snapshot (a follower behind the leader's compacted log)."""
        self.committed = snap.metadata.index
        self.applying = snap.metadata.index
        self.applied = snap.metadata.index
        self.unstable.restore(snap)
