"""The faulty file system of disk faults, on real files: slow, stalled and failing fsyncs
and a full disk, each read from the node's control file and cleared by a new version of it.
Failures are the real file system's `DurableStateError`, naming the file."""

from __future__ import annotations

import errno
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from quorumdb.runtime.fault_control import FaultControl, Faults, parse_faults
from quorumdb.runtime.faulty_fs import FaultyFileSystem
from quorumdb.storage.errors import DurableStateError
from quorumdb.storage.fs import OsFileSystem


def _control(tmp_path: Path, doc: dict[str, Any] | None = None) -> FaultControl:
    control = FaultControl(tmp_path / "n1.json")
    if doc is not None:
        _write(control, doc)
    control.poll()
    return control


def _write(control: FaultControl, doc: object) -> None:
    tmp = control.path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(control.path)


def _fs(tmp_path: Path, control: FaultControl) -> FaultyFileSystem:
    (tmp_path / "data").mkdir(exist_ok=True)
    return FaultyFileSystem(OsFileSystem(), control)


def test_without_faults_files_are_written_and_synced(tmp_path: Path) -> None:
    fs = _fs(tmp_path, _control(tmp_path))
    f = fs.create(str(tmp_path / "data" / "a"))
    f.write(b"hello")
    f.sync()
    f.close()
    fs.fsync_dir(str(tmp_path / "data"))
    assert fs.read(str(tmp_path / "data" / "a")) == b"hello"


def test_a_failing_fsync_raises_eio_naming_the_file(tmp_path: Path) -> None:
    control = _control(tmp_path, {"disk": {"fsync_fail": True}})
    fs = _fs(tmp_path, control)
    path = str(tmp_path / "data" / "seg")
    f = fs.create(path)
    f.write(b"data")  # writes still work: only the fsync fails
    with pytest.raises(DurableStateError) as caught:
        f.sync()
    assert caught.value.path == path and path in str(caught.value)
    assert "fdatasync failed" in str(caught.value) and "(injected)" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.EIO
    with pytest.raises(DurableStateError, match="fsync of directory failed"):
        fs.fsync_dir(str(tmp_path / "data"))
    with pytest.raises(DurableStateError, match="truncate failed"):
        fs.truncate(path, 0)
    with pytest.raises(DurableStateError, match="fsync of directory failed"):
        fs.make_dirs(str(tmp_path / "data" / "new"))
    fs.make_dirs(str(tmp_path / "data"))  # exists already: no fsync, no failure
    _write(control, {})
    control.poll()
    f.sync()


def test_a_full_disk_fails_writes_with_enospc(tmp_path: Path) -> None:
    control = _control(tmp_path, {"disk": {"full": True}})
    fs = _fs(tmp_path, control)
    path = str(tmp_path / "data" / "seg")
    f = fs.create(path)
    with pytest.raises(DurableStateError, match="write failed") as caught:
        f.write(b"data")
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == errno.ENOSPC
    with pytest.raises(DurableStateError, match="posix_fallocate failed"):
        f.preallocate(1 << 20)
    assert f.position == 0 and fs.read(path) == b""
    f.sync()  # fsyncs still work
    _write(control, {"disk": {"full": False}})
    control.poll()
    f.write(b"data")
    assert fs.read(path) == b"data"


def test_a_slow_fsync_sleeps_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr("quorumdb.runtime.faulty_fs.time.sleep", slept.append)
    fs = _fs(tmp_path, _control(tmp_path, {"disk": {"fsync_delay_ms": 250}}))
    f = fs.create(str(tmp_path / "data" / "a"))
    f.write(b"x")
    f.sync()
    fs.fsync_dir(str(tmp_path / "data"))
    assert slept == [0.25, 0.25]


def test_a_stalled_fsync_waits_until_the_control_file_clears_it(tmp_path: Path) -> None:
    control = _control(tmp_path, {"disk": {"fsync_stall": True}})
    fs = _fs(tmp_path, control)
    f = fs.create(str(tmp_path / "data" / "a"))
    f.write(b"x")
    synced = threading.Event()

    def sync() -> None:
        f.sync()
        synced.set()

    worker = threading.Thread(target=sync, daemon=True)
    worker.start()
    # The stall holds while the file says so (the same version polled again changes nothing).
    control.poll()
    assert not synced.wait(0.2)
    _write(control, {"disk": {"fsync_stall": False}})
    control.poll()
    assert synced.wait(10.0), "the cleared stall did not release the fsync"
    worker.join()


def test_closing_the_control_releases_a_stall(tmp_path: Path) -> None:
    control = _control(tmp_path, {"disk": {"fsync_stall": True}})
    released = threading.Event()
    worker = threading.Thread(
        target=lambda: (control.wait_unstalled(), released.set()), daemon=True
    )
    worker.start()
    control.close()
    assert released.wait(10.0)


def test_the_poller_thread_picks_up_new_versions(tmp_path: Path) -> None:
    control = FaultControl(tmp_path / "n1.json")
    seen: list[Faults] = []
    changed = threading.Event()

    def note(f: Faults) -> None:
        seen.append(f)
        changed.set()

    control.on_change.append(note)
    control.start()
    try:
        _write(control, {"clock": {"offset_ms": -1500}})
        assert changed.wait(10.0)
        assert seen == [Faults(offset_ms=-1500.0)]
        assert control.faults.offset_ms == -1500.0
    finally:
        control.close()


def test_a_missing_or_bad_file_means_no_faults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    control = _control(tmp_path, {"disk": {"full": True}})
    assert control.faults.full
    control.path.write_text("{not json")
    control.poll()
    assert control.faults == Faults()
    assert "bad fault control file" in caplog.text and str(control.path) in caplog.text
    _write(control, {"disk": {"full": True}})
    control.poll()
    control.path.unlink()
    control.poll()
    assert control.faults == Faults()


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "expected a JSON object"),
        ({"network": {}}, "unknown section"),
        ({"disk": {"fsync_stall": 1}}, "expected true or false"),
        ({"disk": {"slow": True}}, "unknown field"),
        ({"clock": {"offset_ms": "5"}}, "expected a number"),
        ({"clock": {"drift_ppm": -2_000_000}}, "drift_ppm"),
        ({"disk": {"fsync_delay_ms": -1}}, "fsync_delay_ms"),
        ({"clock": []}, "expected an object"),
    ],
)
def test_parse_names_what_is_wrong(doc: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_faults(doc)


def test_parse_takes_every_field() -> None:
    doc = {
        "clock": {"offset_ms": 12, "drift_ppm": -3.5},
        "disk": {"fsync_delay_ms": 40, "fsync_stall": True, "fsync_fail": True, "full": True},
    }
    assert parse_faults(doc) == Faults(12.0, -3.5, 40.0, True, True, True)
    assert parse_faults({}) == Faults()
