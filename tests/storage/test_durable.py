"""`DurableStorage`: the raft `Storage` of one group over the WAL, driven by real `RawNode`s.

The driver loop here is the Ready contract of `raft.ready` with one group commit per round
for every group; a crash and restart must give each Raft node back its log, hard state and
snapshot, and the node must go on committing.
"""

from __future__ import annotations

import random

import pytest

from quorumdb.raft import (
    CompactedError,
    Config,
    ConfState,
    Entry,
    HardState,
    RawNode,
    Rng,
    Snapshot,
    SnapshotMetadata,
    Storage,
)
from quorumdb.sim.disk import SimDisk
from quorumdb.storage.durable import DurableStorage
from quorumdb.storage.errors import SnapshotTooLargeError
from quorumdb.storage.fs import FileSystem
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import WAL, GroupWrite
from tests.storage.wal_helpers import ents, open_sim, sim_fs

VOTERS = ConfState(voters=(1,))


class SingleNodeGroups:
    """Single-voter Raft groups sharing one WAL: each round is one group commit."""

    def __init__(self, fs: FileSystem, groups: list[int], seed: int = 0) -> None:
        self.fs = fs
        self.groups = groups
        self.rng = random.Random(seed)
        self.applied: dict[int, list[bytes]] = {g: [] for g in groups}
        self.start()

    def start(self) -> None:
        self.wal, self.snaps, recovered = open_sim(self.fs, segment_bytes_max=2048)
        self.storages: dict[int, DurableStorage] = {}
        self.nodes: dict[int, RawNode] = {}
        for g in self.groups:
            st = DurableStorage(g, self.wal, self.snaps, recovered.get(g), conf_state=VOTERS)
            self.storages[g] = st
            snap = st.snapshot()
            applied = snap.metadata.index
            self.applied[g] = self.applied[g][:applied] if applied else []
            cfg = Config(id=1, election_ticks=10, heartbeat_ticks=1, applied=applied)
            self.nodes[g] = RawNode(cfg, st, Rng(self.rng.randrange))

    def round(self) -> int:
        """Handle every group's Ready with one WAL save; return how many Readies."""
        readies = [(g, n, n.ready()) for g, n in self.nodes.items() if n.has_ready()]
        writes: list[GroupWrite] = []
        sync = False
        for g, _, rd in readies:
            w = self.storages[g].persist(rd.entries, rd.hard_state, rd.snapshot)
            if w is not None:
                writes.append(w)
            sync = sync or rd.must_sync
        self.wal.save(writes, sync=sync)
        for g, n, rd in readies:
            self.applied[g] += [e.data for e in rd.committed_entries if e.data]
            n.advance(rd)
        return len(readies)

    def settle(self) -> None:
        while self.round():
            pass

    def elect(self) -> None:
        for n in self.nodes.values():
            n.campaign()
        self.settle()
        assert all(n.is_leader for n in self.nodes.values())


def test_a_restarted_node_gets_back_its_log_hard_state_and_snapshot() -> None:
    disk, fs = sim_fs(1)
    c = SingleNodeGroups(fs, [1, 2, 3])
    c.elect()
    for i in range(60):
        g = c.groups[i % 3]
        c.nodes[g].propose(f"g{g}-{i}".encode())
        c.settle()
    st = c.storages[2]
    commit = st.hard_state.commit
    st.create_snapshot(commit - 5, None, b"state of group 2")
    st.compact(keep_entries=3)
    assert st.first_index() == commit - 5 - 3 + 1
    for i in range(10):
        c.nodes[2].propose(f"after-{i}".encode())
        c.settle()
    before = {g: (c.storages[g].hard_state, c.storages[g].last_index()) for g in c.groups}
    applied = {g: list(v) for g, v in c.applied.items()}
    disk.crash(tear=False)
    c.start()
    for g in c.groups:
        st = c.storages[g]
        hs, last = before[g]
        assert st.last_index() == last, "every entry was synced before its ack"
        assert (st.hard_state.term, st.hard_state.vote) == (hs.term, hs.vote)
        # A commit-only hard state is not synced (etcd's MustSync): it may step back.
        assert st.snapshot().metadata.index <= st.hard_state.commit <= hs.commit
        assert c.nodes[g].status().hard_state == st.hard_state
    assert c.storages[2].snapshot().data == b"state of group 2"
    assert c.storages[2].first_index() == commit - 5 + 1, "after a restart: from the snapshot"
    tail = c.storages[1].entries(1, c.storages[1].last_index() + 1, 1 << 30)
    assert [e.data for e in tail if e.data] == applied[1]
    c.elect()  # a new term on top of the recovered one
    c.nodes[1].propose(b"after restart")
    c.settle()
    assert c.storages[1].entries(c.storages[1].last_index(), c.storages[1].last_index() + 1, 0)[
        0
    ].data == (b"after restart")


def test_every_round_is_one_write_and_one_sync_for_all_groups() -> None:
    disk, fs = sim_fs(2)
    c = SingleNodeGroups(fs, list(range(1, 11)))
    c.elect()
    writes, syncs = disk.stats["writes"], disk.stats["syncs"]
    for n in c.nodes.values():
        n.propose(b"x" * 10)
    assert c.round() == 10
    assert disk.stats["writes"] - writes == 1
    assert disk.stats["syncs"] - syncs == 1


def test_snapshots_and_compaction_bound_memory_and_disk() -> None:
    _, fs = sim_fs(3)
    c = SingleNodeGroups(fs, [1])
    c.elect()
    st = c.storages[1]
    for round_ in range(30):
        for i in range(20):
            c.nodes[1].propose(f"{round_}-{i}".encode().ljust(40, b"."))
        c.settle()
        st.create_snapshot(st.hard_state.commit, None, f"snap {round_}".encode())
        st.compact(keep_entries=5)
        assert st.last_index() - st.first_index() + 1 <= 5, "memory: entries since compaction"
    assert len(c.wal.segment_paths()) <= 3, "disk: covered segments are deleted"
    assert len(c.snaps.list_files(1)) == 2


def test_installing_a_leaders_snapshot_replaces_the_log_and_survives_a_crash() -> None:
    disk, fs = sim_fs(4)
    wal, snaps, _ = open_sim(fs)
    st = DurableStorage(1, wal, snaps, None, conf_state=VOTERS)
    w = st.persist(ents(1, 10, term=1), HardState(term=1, commit=3), None)
    assert w is not None
    wal.save([w], sync=True)
    snap = Snapshot(
        metadata=SnapshotMetadata(conf_state=ConfState(voters=(1, 2)), index=8, term=2),
        data=b"leader state",
    )
    w = st.persist([], HardState(term=2, commit=8), snap)
    assert w is not None and w.snapshot is not None
    assert (st.first_index(), st.last_index()) == (9, 8), "the whole log was replaced"
    wal.save([w], sync=True)
    w = st.persist(ents(9, 2, term=2), None, None)
    assert w is not None
    wal.save([w], sync=True)
    disk.crash(tear=False)
    wal, snaps, recovered = open_sim(fs)
    st = DurableStorage(1, wal, snaps, recovered[1], conf_state=VOTERS)
    assert st.snapshot() == snap
    assert st.initial_state() == (HardState(term=2, commit=8), ConfState(voters=(1, 2)))
    assert st.entries(9, 11, 1 << 20) == ents(9, 2, term=2)
    with pytest.raises(CompactedError):
        st.entries(8, 9, 1 << 20)
    assert st.term(8) == 2


def test_an_older_snapshot_changes_nothing_and_writes_nothing() -> None:
    _, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    st = DurableStorage(1, wal, snaps, None)
    wal.save([st.persist(ents(1, 5), HardState(term=1, commit=5), None)], sync=True)  # type: ignore[list-item]
    st.create_snapshot(4, None, b"s")
    old = Snapshot(metadata=SnapshotMetadata(index=3, term=1), data=b"old")
    assert st.apply_snapshot(old) is None
    assert st.persist([], None, old) is None
    assert st.snapshot().metadata.index == 4


def test_a_too_large_snapshot_is_refused_before_anything_changes() -> None:
    _, fs = sim_fs()
    snaps = SnapshotStore(fs, "n1/snap", snapshot_bytes_max=10)
    wal, _ = WAL.open(fs, "n1/wal", snapshots=snaps)
    st = DurableStorage(1, wal, snaps, None)
    wal.save([st.persist(ents(1, 5), HardState(term=1, commit=5), None)], sync=True)  # type: ignore[list-item]
    with pytest.raises(SnapshotTooLargeError):
        st.create_snapshot(5, None, b"x" * 11)
    assert st.snapshot().is_empty()
    assert st.first_index() == 1


def test_durable_storage_is_a_raft_storage() -> None:
    _, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    st: Storage = DurableStorage(1, wal, snaps, None, conf_state=VOTERS)
    assert st.initial_state() == (HardState(), VOTERS)
    assert (st.first_index(), st.last_index()) == (1, 0)
    entry: list[Entry] = st.entries(1, 1, 0)
    assert entry == []


def test_disk_use_of_simdisk_is_visible() -> None:
    disk = SimDisk("n9", random.Random(0))
    assert disk.list_dir("") == []
