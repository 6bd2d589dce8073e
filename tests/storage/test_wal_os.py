"""The WAL on real files: a torn last batch at every byte, and a flipped bit mid-file.

A power cut during the last write leaves, in a preallocated segment, a prefix of the batch
followed by the preallocated zeros (or, without preallocation, a shorter file). Both are
simulated at every byte offset of the last batch: recovery must drop exactly that batch
(it was never acknowledged) and keep working. A flipped bit in an earlier record must stop
recovery with the file and the record's offset.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from quorumdb.raft import HardState
from quorumdb.storage.records import CorruptRecordError, scan_records
from quorumdb.storage.wal import GroupWrite
from tests.storage.wal_helpers import ents, open_os

SEGMENT = 1 << 14


def _write_log(root: Path) -> tuple[Path, int, int]:
    """Three groups, twenty batches; return the segment and the span of the last batch."""
    wal, _, _ = open_os(root, segment_bytes_max=SEGMENT)
    for i in range(1, 21):
        wal.save(
            [
                GroupWrite(
                    group=g,
                    entries=ents(i, 1, tag=g),
                    hard_state=HardState(term=1, commit=i - 1),
                )
                for g in (1, 2, 3)
            ],
            sync=True,
        )
    wal.close()
    (path,) = (Path(p) for p in wal.segment_paths())
    data = path.read_bytes()
    recs, end = scan_records(data, str(path), final=True)
    return path, recs[-1][0], end


@pytest.mark.parametrize("preallocated", [True, False], ids=["zero-tail", "short-file"])
def test_a_torn_last_batch_at_every_byte_is_dropped_and_the_log_goes_on(
    tmp_path: Path, preallocated: bool
) -> None:
    root = tmp_path / "node"
    path, start, end = _write_log(root)
    original = path.read_bytes()
    for cut in range(start, end):
        torn = original[:cut]
        path.write_bytes(torn + bytes(len(original) - cut) if preallocated else torn)
        wal, _, recovered = open_os(root, segment_bytes_max=SEGMENT)
        for g in (1, 2, 3):
            assert recovered[g].entries == ents(1, 19, tag=g), f"cut at {cut}"
            assert recovered[g].hard_state == HardState(term=1, commit=18)
        data = path.read_bytes()
        assert data[:start] == original[:start]
        assert data.count(0, start) == len(data) - start, "the torn bytes are gone"
        # The recovered log accepts the batch again, and keeps it.
        wal.save([GroupWrite(group=g, entries=ents(20, 1, tag=g)) for g in (1, 2, 3)], sync=True)
        wal.close()
        _, _, recovered = open_os(root, segment_bytes_max=SEGMENT)
        assert recovered[1].entries == ents(1, 20, tag=1)
        path.write_bytes(original)


def test_a_flipped_bit_mid_file_refuses_to_start_naming_file_and_offset(tmp_path: Path) -> None:
    root = tmp_path / "node"
    path, _, _ = _write_log(root)
    original = path.read_bytes()
    recs, _ = scan_records(original, str(path), final=True)
    for k in (1, len(recs) // 2, len(recs) - 2):
        start = recs[k][0]
        rec_end = recs[k + 1][0]
        for offset in (start, start + 4, start + 13, (start + rec_end) // 2, rec_end - 1):
            damaged = bytearray(original)
            damaged[offset] ^= 0x04
            path.write_bytes(bytes(damaged))
            with pytest.raises(CorruptRecordError) as err:
                open_os(root, segment_bytes_max=SEGMENT)
            assert (err.value.path, err.value.offset) == (str(path), start)
            assert str(err.value).startswith(f"corrupt record in {path} at offset {start}: ")
    path.write_bytes(original)
    open_os(root, segment_bytes_max=SEGMENT)
