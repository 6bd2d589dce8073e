"""The `FileSystem` contract, run on both implementations, and the simulator's directory model.

`OsFileSystem` and `SimFileSystem` must behave alike for everything the WAL relies on; the
simulator additionally forgets what a power cut forgets (unsynced data, unsynced names).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from quorumdb.sim.disk import SimDisk
from quorumdb.sim.disk_fs import SimFileSystem
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import FileSystem, OsFileSystem


@pytest.fixture(params=["os", "sim"])
def fs_root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[FileSystem, str]]:
    if request.param == "os":
        yield OsFileSystem(), str(tmp_path / "root")
    else:
        yield SimFileSystem(SimDisk("n1", random.Random(0))), "n1/root"


def test_create_write_read_and_position(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.make_dirs(f"{root}/a/b")
    f = fs.create(f"{root}/a/b/f")
    assert f.position == 0
    f.write(b"hello ")
    f.write(memoryview(b"world"))
    assert f.position == 11
    f.sync()
    f.close()
    assert fs.read(f"{root}/a/b/f") == b"hello world"
    assert fs.exists(f"{root}/a/b/f")
    assert fs.list_dir(f"{root}/a") == ["b"]
    assert fs.list_dir(f"{root}/a/b") == ["f"]
    assert fs.list_dir(f"{root}/missing") == []


def test_preallocate_reads_as_zeros_and_writes_land_at_the_position(
    fs_root: tuple[FileSystem, str],
) -> None:
    fs, root = fs_root
    fs.make_dirs(root)
    f = fs.create(f"{root}/seg")
    f.write(b"abc")
    f.preallocate(64)
    f.sync()
    f.close()
    data = fs.read(f"{root}/seg")
    assert data[:3] == b"abc"
    assert data[3:] == bytes(len(data) - 3)  # 61 zeros, or nothing where not supported
    g = fs.open_append(f"{root}/seg", position=3)
    g.write(b"de")
    g.sync()
    g.close()
    assert fs.read(f"{root}/seg")[:6] == b"abcde\x00"[: min(6, len(data))]


def test_truncate_rename_remove(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    fs.make_dirs(root)
    f = fs.create(f"{root}/x.tmp")
    f.write(b"0123456789")
    f.sync()
    f.close()
    fs.truncate(f"{root}/x.tmp", 4)
    fs.rename(f"{root}/x.tmp", f"{root}/x")
    fs.fsync_dir(root)
    assert fs.read(f"{root}/x") == b"0123"
    assert fs.list_dir(root) == ["x"]
    fs.remove(f"{root}/x")
    fs.fsync_dir(root)
    assert fs.list_dir(root) == []
    assert not fs.exists(f"{root}/x")


def test_errors_name_the_path(fs_root: tuple[FileSystem, str]) -> None:
    fs, root = fs_root
    with pytest.raises(DurableStateError) as err:
        fs.read(f"{root}/nope")
    assert err.value.path == f"{root}/nope"
    assert f"{root}/nope" in str(err.value)


# -- the simulator's name durability ------------------------------------------------------------


def _sim() -> tuple[SimDisk, SimFileSystem]:
    disk = SimDisk("n1", random.Random(3))
    return disk, SimFileSystem(disk)


def test_a_new_file_without_a_directory_fsync_vanishes_in_a_crash() -> None:
    disk, fs = _sim()
    f = fs.create("n1/d/new")
    f.write(b"synced data")
    f.sync()
    disk.crash(tear=False)
    assert not fs.exists("n1/d/new")


def test_a_directory_fsync_makes_creations_renames_and_removals_durable() -> None:
    disk, fs = _sim()
    for name in ("a", "b"):
        f = fs.create(f"n1/d/{name}")
        f.write(name.encode())
        f.sync()
    fs.fsync_dir("n1/d")
    fs.rename("n1/d/a", "n1/d/c")
    fs.remove("n1/d/b")
    fs.fsync_dir("n1/d")
    disk.crash(tear=True)
    assert fs.list_dir("n1/d") == ["c"]
    assert fs.read("n1/d/c") == b"a"


def test_an_unsynced_rename_is_atomic_in_a_torn_crash() -> None:
    seen = set()
    for seed in range(30):
        disk = SimDisk("n1", random.Random(seed))
        fs = SimFileSystem(disk)
        for name in ("old", "new.tmp"):
            f = fs.create(f"n1/d/{name}")
            f.write(name.encode())
            f.sync()
        fs.fsync_dir("n1/d")
        fs.rename("n1/d/new.tmp", "n1/d/old")
        disk.crash(tear=True)
        listing = tuple(fs.list_dir("n1/d"))
        assert listing in {("new.tmp", "old"), ("old",)}
        if listing == ("old",):
            assert fs.read("n1/d/old") == b"new.tmp"
        else:
            assert fs.read("n1/d/old") == b"old"
        seen.add(listing)
    assert len(seen) == 2, "both outcomes occur"


def test_a_directory_fsync_covers_only_its_own_directory() -> None:
    disk, fs = _sim()
    fs.create("n1/d1/x").sync()
    fs.create("n1/d2/y").sync()
    fs.fsync_dir("n1/d1")
    disk.crash(tear=False)
    assert fs.exists("n1/d1/x")
    assert not fs.exists("n1/d2/y")


def test_overwriting_writes_are_torn_in_order() -> None:
    for seed in range(40):
        disk = SimDisk("n1", random.Random(seed))
        fs = SimFileSystem(disk)
        f = fs.create("n1/seg")
        f.preallocate(32)
        f.sync()
        fs.fsync_dir("n1")
        f.write(b"A" * 8)
        f.write(b"B" * 8)
        disk.crash(tear=True)
        data = fs.read("n1/seg")
        assert len(data) == 32
        kept = data.rstrip(b"\x00")
        assert (b"A" * 8 + b"B" * 8).startswith(kept), "a prefix of the writes, in order"


# -- the one door to the operating system --------------------------------------------------------


# The Raft log's durable state goes through `FileSystem` only, so the simulator can crash it.
_THROUGH_FS = ("records.py", "errors.py", "wal.py", "snapshots.py", "durable.py")


@pytest.mark.parametrize("module", _THROUGH_FS)
def test_the_raft_storage_modules_reach_the_os_only_through_fs_py(module: str) -> None:
    import ast

    import quorumdb.storage

    forbidden = {"os", "io", "pathlib", "shutil", "tempfile", "time", "random", "socket"}
    for path in [Path(quorumdb.storage.__file__).parent / module]:
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        assert not names & forbidden, f"storage/{path.name} imports {sorted(names & forbidden)}"
