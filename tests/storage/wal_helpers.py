"""Shared helpers for the WAL tests: nodes on a SimDisk or in a tmp dir, entries, a log model."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from quorumdb.raft import Entry, HardState, Snapshot, SnapshotMetadata
from quorumdb.sim.disk import SimDisk
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.fs import FileSystem, OsFileSystem
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite, RecoveredGroup

NODE = "n1"
WAL_DIR = f"{NODE}/wal"
SNAP_DIR = f"{NODE}/snap"


def sim_fs(seed: int = 0) -> tuple[SimDisk, SimFileSystem]:
    disk = SimDisk(NODE, random.Random(seed))
    return disk, SimFileSystem(disk)


def open_sim(
    fs: FileSystem, *, segment_bytes_max: int = 4096, keep: int = 2
) -> tuple[WAL, SnapshotStore, dict[int, RecoveredGroup]]:
    snaps = SnapshotStore(fs, SNAP_DIR, keep=keep)
    wal, recovered = WAL.open(fs, WAL_DIR, snapshots=snaps, segment_bytes_max=segment_bytes_max)
    return wal, snaps, recovered


def open_os(
    root: Path, *, segment_bytes_max: int = 1 << 16, keep: int = 2
) -> tuple[WAL, SnapshotStore, dict[int, RecoveredGroup]]:
    fs = OsFileSystem()
    snaps = SnapshotStore(fs, str(root / "snap"), keep=keep)
    wal, recovered = WAL.open(
        fs, str(root / "wal"), snapshots=snaps, segment_bytes_max=segment_bytes_max
    )
    return wal, snaps, recovered


def ents(start: int, n: int, term: int = 1, size: int = 20, tag: int = 0) -> list[Entry]:
    """n entries from `start`, each with `size` bytes of data naming its index (and `tag`)."""
    return [
        Entry(term=term, index=i, data=f"{tag}:{i}:".encode().ljust(size, b".")[:size])
        for i in range(start, start + n)
    ]


@dataclass
class GroupModel:
    """What a group's durable state should be: a Raft log as a list, a hard state, a snapshot.

    `base` is the index before `entries[0]` (a snapshot's index, or 0).
    """

    base: int = 0
    base_term: int = 0
    entries: list[Entry] = field(default_factory=list)
    hard_state: HardState = field(default_factory=HardState)

    def copy(self) -> GroupModel:
        return GroupModel(self.base, self.base_term, list(self.entries), self.hard_state)

    @property
    def last(self) -> int:
        return self.base + len(self.entries)

    def term_at(self, index: int) -> int | None:
        if index == self.base:
            return self.base_term
        if self.base < index <= self.last:
            return self.entries[index - self.base - 1].term
        return None

    def append(self, new: list[Entry]) -> None:
        if not new:
            return
        first = new[0].index
        assert self.base < first <= self.last + 1, (first, self.base, self.last)
        del self.entries[first - self.base - 1 :]
        self.entries.extend(new)

    def install(self, index: int, term: int) -> None:
        self.base, self.base_term, self.entries = index, term, []

    def expected_after(self, snap: Snapshot | None) -> tuple[list[Entry], HardState]:
        """Entries and hard state recovery must return given the newest durable snapshot:
        Raft §7 (keep the suffix after a matching entry, else nothing)."""
        index = snap.metadata.index if snap is not None else 0
        term = snap.metadata.term if snap is not None else 0
        hs = self.hard_state
        if hs.commit < index:
            hs = HardState(term=hs.term, vote=hs.vote, commit=index)
        if index < self.base:
            raise AssertionError(f"snapshot {index} older than the model's base {self.base}")
        t = self.term_at(index)
        if t is None or (t != term and index > self.base):
            return [], hs
        if index == self.base and self.base_term != term and index > 0:
            return [], hs
        return self.entries[index - self.base :], hs


def assert_recovered(
    recovered: dict[int, RecoveredGroup], models: dict[int, GroupModel], snaps: SnapshotStore
) -> None:
    """Every modelled group comes back exactly as the model says (given its snapshot)."""
    for g, model in models.items():
        rec = recovered.get(g)
        if rec is None:
            assert not model.entries, f"group {g}: lost entries {model.entries[:3]}..."
            assert model.hard_state.is_empty(), f"group {g}: lost {model.hard_state}"
            continue
        want_entries, want_hs = model.expected_after(rec.snapshot)
        assert rec.entries == want_entries, (
            f"group {g}: recovered {_span(rec.entries)}, expected {_span(want_entries)}"
        )
        assert rec.hard_state == want_hs, f"group {g}: {rec.hard_state} != {want_hs}"


def _span(entries: list[Entry]) -> str:
    if not entries:
        return "[]"
    return f"[{entries[0].index}..{entries[-1].index}] terms {sorted({e.term for e in entries})}"


# -- a node driver against the model ---------------------------------------------------------


@dataclass(frozen=True)
class GroupPlan:
    """One group's part of a Ready: append `n` entries going `back` entries into the log
    (never below the commit or the snapshot), maybe in a new term, then maybe a hard state."""

    group: int
    back: int = 0
    n: int = 1
    new_term: bool = False
    commit_step: int | None = None  # None: no hard state in this Ready
    vote: int = 0


class Driver:
    """Drives `DurableStorage`s + one `WAL` like a Raft node would, and keeps the model.

    `candidates` are the states recovery may legitimately return: the state the last sync
    covered, and every state after it (unsynced saves may survive a crash, in order).
    """

    def __init__(
        self, fs: FileSystem, groups: list[int], *, segment_bytes_max: int = 4096, keep: int = 2
    ) -> None:
        self.fs = fs
        self.groups = groups
        self.segment_bytes_max = segment_bytes_max
        self.keep = keep
        self.models = {g: GroupModel() for g in groups}
        self.candidates: list[dict[int, GroupModel]] = [self._copy()]
        self.term = dict.fromkeys(groups, 1)
        self.snap_choices: dict[int, set[int]] = {g: {0} for g in groups}
        self.data_seq = 0
        self._open()
        self.check_cache()

    # -- lifecycle ---------------------------------------------------------------------------

    def _open(self) -> dict[int, RecoveredGroup]:
        self.wal, self.snaps, recovered = open_sim(
            self.fs, segment_bytes_max=self.segment_bytes_max, keep=self.keep
        )
        self.storages = {
            g: DurableStorage(g, self.wal, self.snaps, recovered.get(g)) for g in self.groups
        }
        return recovered

    def _copy(self) -> dict[int, GroupModel]:
        return {g: m.copy() for g, m in self.models.items()}

    def recover_and_check(self, *, exact_snapshot: bool = True) -> dict[int, RecoveredGroup]:
        """Reopen after a crash: the result must be one candidate state; adopt it.

        With `exact_snapshot`, each group's snapshot must be the newest one saved (every
        snapshot save completed); otherwise any snapshot saved since the last recovery.
        """
        recovered = self._open()
        for g in self.groups:
            rec = recovered.get(g)
            got = rec.snapshot.metadata.index if rec is not None and rec.snapshot else 0
            choices = self.snap_choices[g]
            want = {max(choices)} if exact_snapshot else choices
            assert got in want, f"group {g}: recovered snapshot {got}, expected one of {want}"
        errors: list[str] = []
        for k in range(len(self.candidates) - 1, -1, -1):
            try:
                assert_recovered(recovered, self.candidates[k], self.snaps)
            except AssertionError as exc:
                errors.append(f"candidate {k}: {exc}")
                continue
            break
        else:
            raise AssertionError(
                f"recovered state is none of the {len(self.candidates)} candidates: {errors}"
            )
        for g in self.groups:
            rec = recovered.get(g)
            model = GroupModel()
            if rec is not None:
                snap = rec.snapshot
                if snap is not None:
                    model.base, model.base_term = snap.metadata.index, snap.metadata.term
                model.entries = list(rec.entries)
                model.hard_state = rec.hard_state
                last_term = rec.entries[-1].term if rec.entries else model.base_term
                self.term[g] = max(self.term[g], rec.hard_state.term, last_term)
                self.snap_choices[g] = {model.base}
            else:
                self.snap_choices[g] = {0}
            self.models[g] = model
        self.candidates = [self._copy()]
        self.check_cache()
        return recovered

    # -- operations ----------------------------------------------------------------------------

    def ready(self, plans: list[GroupPlan], *, sync: bool) -> None:
        writes: list[GroupWrite] = []
        for p in plans:
            m = self.models[p.group]
            if p.new_term:
                self.term[p.group] += 1
            term = self.term[p.group]
            new: list[Entry] = []
            if p.n:
                floor = max(m.hard_state.commit, m.base) + 1
                start = max(floor, m.last + 1 - p.back)
                self.data_seq += 1
                new = ents(start, p.n, term=term, tag=self.data_seq)
                m.append(new)
            hs = None
            if p.commit_step is not None:
                commit = min(m.last, m.hard_state.commit + p.commit_step)
                vote = m.hard_state.vote if m.hard_state.term == term else p.vote
                hs = HardState(term=term, vote=vote, commit=max(commit, m.hard_state.commit))
                m.hard_state = hs
            w = self.storages[p.group].persist(new, hs, None)
            if w is not None:
                writes.append(w)
        self._save(writes, sync=sync)

    def _save(self, writes: list[GroupWrite], *, sync: bool) -> None:
        before = self.candidates[-1]
        self.candidates.append(self._copy())
        syncs = self.wal.stats["syncs"]
        self.wal.save(writes, sync=sync)
        if sync:
            self.candidates = [self.candidates[-1]]
        elif self.wal.stats["syncs"] > syncs:
            # A rotation synced the closed segment: everything before this save is durable.
            self.candidates = [before, self.candidates[-1]]
        self.check_cache()

    def install(self, group: int, ahead: int, *, new_term: bool, sync: bool) -> None:
        """Install a leader's snapshot `ahead` entries past our commit."""
        m = self.models[group]
        index = m.hard_state.commit + ahead
        assert index > m.base
        if new_term:
            self.term[group] += 1
        t = m.term_at(index)
        term = t if t is not None and not new_term else self.term[group]
        self.term[group] = max(self.term[group], term)
        self.data_seq += 1
        snap = Snapshot(
            metadata=SnapshotMetadata(index=index, term=term),
            data=f"install {self.data_seq}".encode(),
        )
        hs = HardState(term=self.term[group], vote=m.hard_state.vote, commit=index)
        self.snap_choices[group].add(index)
        m.install(index, term)
        m.hard_state = hs
        w = self.storages[group].persist([], hs, snap)
        assert w is not None and w.snapshot is not None
        self._save([w], sync=sync)

    def snapshot(self, group: int, keep_entries: int) -> None:
        """Snapshot the group at its commit index and compact."""
        m = self.models[group]
        st = self.storages[group]
        index = m.hard_state.commit
        if index <= st.snapshot().metadata.index:
            return
        self.data_seq += 1
        self.snap_choices[group].add(index)
        st.create_snapshot(index, None, f"state {self.data_seq}".encode())
        st.compact(keep_entries)
        self.check_cache()

    def check_cache(self) -> None:
        """Each DurableStorage answers reads as the model says (entries it still caches)."""
        for g, st in self.storages.items():
            m = self.models[g]
            assert st.last_index() == m.last, f"group {g}: last {st.last_index()} != {m.last}"
            assert st.hard_state == m.hard_state, f"group {g}: {st.hard_state} != {m.hard_state}"
            lo = st.first_index()
            if lo <= m.last:
                got = st.entries(lo, m.last + 1, 1 << 62)
                assert got == m.entries[lo - m.base - 1 :], f"group {g}: cache differs"
