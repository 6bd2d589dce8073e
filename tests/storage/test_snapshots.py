"""The snapshot store: atomic and durable saves, bounded count and size, validation on load,
and the fall-back rule for a corrupt newest snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.raft import ConfState, Snapshot, SnapshotMetadata
from quorumdb.storage.errors import SnapshotTooLargeError
from quorumdb.storage.fs import OsFileSystem
from quorumdb.storage.records import CorruptRecordError, read_record
from quorumdb.storage.snapshots import SnapshotStore
from quorumdb.storage.wal import GroupWrite
from tests.storage.wal_helpers import SNAP_DIR, ents, open_sim, sim_fs


def _snap(index: int, term: int = 1, data: bytes = b"image") -> Snapshot:
    meta = SnapshotMetadata(conf_state=ConfState(voters=(1, 2, 3)), index=index, term=term)
    return Snapshot(metadata=meta, data=data)


def test_save_then_load_latest_round_trips_and_names_the_file_by_term_and_index() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    path = store.save(3, _snap(42, term=7, data=b"x" * 1000))
    assert path == f"{SNAP_DIR}/3/{7:020d}-{42:020d}.snap"
    assert fs.list_dir(f"{SNAP_DIR}/3") == [path.rsplit("/", 1)[1]]
    assert store.load_latest(3) == _snap(42, term=7, data=b"x" * 1000)
    assert store.load_latest(4) is None
    assert store.groups() == [3]


def test_a_saved_snapshot_survives_a_crash_at_once() -> None:
    disk, fs = sim_fs()
    SnapshotStore(fs, SNAP_DIR).save(1, _snap(5))
    disk.crash(tear=True)
    assert SnapshotStore(fs, SNAP_DIR).load_latest(1) == _snap(5)


def test_a_crash_before_the_rename_leaves_the_old_snapshot_and_a_leftover() -> None:
    disk, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    store.save(1, _snap(5))
    tmp = f"{SNAP_DIR}/1/{1:020d}-{9:020d}.snap.tmp"
    f = fs.create(tmp)  # what save does before the rename
    f.write(b"half a snapshot")
    f.sync()
    fs.fsync_dir(f"{SNAP_DIR}/1")
    disk.crash(tear=True)
    store = SnapshotStore(fs, SNAP_DIR)
    assert store.load_latest(1) == _snap(5)
    assert store.remove_leftovers() == [tmp]
    assert not fs.exists(tmp)


def test_a_rename_without_the_directory_fsync_may_be_lost() -> None:
    # Why `save` fsyncs the directory: the simulator's disk forgets an unsynced rename.
    disk, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    store.save(1, _snap(5))
    f = fs.create(f"{SNAP_DIR}/1/x.tmp")
    f.write(b"data")
    f.sync()
    fs.rename(f"{SNAP_DIR}/1/x.tmp", f"{SNAP_DIR}/1/x")
    disk.crash(tear=False)
    assert not fs.exists(f"{SNAP_DIR}/1/x")
    assert not fs.exists(f"{SNAP_DIR}/1/x.tmp")


def test_only_the_newest_keep_snapshots_remain() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR, keep=3)
    for i in range(1, 8):
        store.save(2, _snap(i * 10))
    assert [sf.index for sf in store.list_files(2)] == [70, 60, 50]
    assert len(fs.list_dir(f"{SNAP_DIR}/2")) == 3


def test_a_snapshot_over_the_size_limit_is_refused_and_nothing_is_written() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR, snapshot_bytes_max=100)
    store.save(1, _snap(1, data=b"y" * 100))
    with pytest.raises(SnapshotTooLargeError) as err:
        store.save(1, _snap(2, data=b"y" * 101))
    assert err.value.path.endswith(f"{2:020d}.snap")
    assert "101 bytes exceeds snapshot_bytes_max=100" in str(err.value)
    assert [sf.index for sf in store.list_files(1)] == [1]


@pytest.mark.parametrize("where", ["header", "image"])
def test_a_damaged_snapshot_file_is_corruption_with_path_and_offset(where: str) -> None:
    disk, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR, keep=1)
    path = store.save(1, _snap(9, data=b"z" * 50))
    file = path.removeprefix(f"{disk.name}/")
    _, _, image_at = read_record(disk.read(file), path)
    offset = 5 if where == "header" else image_at + 20
    disk.write(file, offset, bytes([disk.read(file)[offset] ^ 0x10]))
    disk.sync(file)
    with pytest.raises(CorruptRecordError) as err:
        store.load_latest(1)
    assert err.value.path == path
    assert err.value.offset == (0 if where == "header" else image_at)


def test_a_file_whose_header_contradicts_its_name_is_corrupt() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    path = store.save(1, _snap(9, term=2))
    fs.rename(path, f"{SNAP_DIR}/1/{2:020d}-{10:020d}.snap")
    with pytest.raises(CorruptRecordError, match="header says group 1 term 2 index 9"):
        store.load_latest(1)


def _corrupt_newest(store: SnapshotStore, group: int) -> str:
    fs = store._fs  # white box: the store's file system
    newest = store.list_files(group)[0]
    data = bytearray(fs.read(newest.path))
    data[-1] ^= 1
    f = fs.create(newest.path)
    f.write(data)
    f.sync()
    fs.fsync_dir(newest.path.rsplit("/", 1)[0])
    return newest.path


def test_a_corrupt_newest_snapshot_falls_back_only_to_a_usable_older_one() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    store.save(1, _snap(10))
    store.save(1, _snap(20))
    bad = _corrupt_newest(store, 1)
    assert store.load_latest(1, usable=lambda meta: meta.index >= 10) == _snap(10)
    assert [e.path for e in store.skipped] == [bad]
    with pytest.raises(CorruptRecordError) as err:
        store.load_latest(1, usable=lambda meta: meta.index >= 15)
    assert err.value.path == bad


def test_a_corrupt_only_snapshot_refuses() -> None:
    _, fs = sim_fs()
    store = SnapshotStore(fs, SNAP_DIR)
    store.save(1, _snap(10))
    bad = _corrupt_newest(store, 1)
    with pytest.raises(CorruptRecordError) as err:
        store.load_latest(1)
    assert err.value.path == bad


# -- with the WAL -------------------------------------------------------------------------------


def test_recovery_uses_the_older_snapshot_if_the_wal_still_has_the_entries_after_it() -> None:
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs)
    wal.save([GroupWrite(group=1, entries=ents(1, 30))], sync=True)
    snaps.save(1, _snap(10))
    snaps.save(1, _snap(20))
    wal.compact(1, 10)  # keeps what follows the older snapshot
    _corrupt_newest(snaps, 1)
    disk.crash(tear=False)
    _, snaps, recovered = open_sim(fs)
    assert recovered[1].snapshot == _snap(10)
    assert recovered[1].entries == ents(11, 20)
    assert len(snaps.skipped) == 1


def test_recovery_refuses_if_the_wal_no_longer_has_the_entries_after_the_older_snapshot() -> None:
    disk, fs = sim_fs()
    wal, snaps, _ = open_sim(fs, segment_bytes_max=1024)
    for i in range(1, 80):
        wal.save([GroupWrite(group=1, entries=ents(i, 1))], sync=True)
    snaps.save(1, _snap(10))
    snaps.save(1, _snap(60))
    assert wal.compact(1, 60), "segments holding entries 11..60 are deleted"
    bad = _corrupt_newest(snaps, 1)
    disk.crash(tear=False)
    with pytest.raises(CorruptRecordError) as err:
        open_sim(fs, segment_bytes_max=1024)
    assert err.value.path == bad


def test_the_store_works_on_real_files(tmp_path: Path) -> None:
    store = SnapshotStore(OsFileSystem(), str(tmp_path / "snap"), keep=2)
    for i in (5, 6, 7):
        store.save(11, _snap(i, data=bytes(range(256)) * 40))
    assert sorted(p.name for p in (tmp_path / "snap" / "11").iterdir()) == [
        f"{1:020d}-{6:020d}.snap",
        f"{1:020d}-{7:020d}.snap",
    ]
    assert SnapshotStore(OsFileSystem(), str(tmp_path / "snap")).load_latest(11) == _snap(
        7, data=bytes(range(256)) * 40
    )
