"""`NodeFaults` writes each target node's control file (atomically) for a clock or disk
fault, clears it when the fault ends, and clears every file when healed or closed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from quorumdb.nemesis.node_faults import NodeFaults, fault_document
from quorumdb.nemesis.schedule import VARIANTS, Fault, Nemesis
from quorumdb.runtime.fault_control import FAULT_CONTROL_ENV, parse_faults


def test_node_faults_write_each_nodes_control_file(tmp_path: Path) -> None:
    faults = NodeFaults(tmp_path / "cluster")
    control = Path(faults.node_env()[FAULT_CONTROL_ENV])
    assert control.is_dir() and control.is_absolute()
    offset = Fault(1.0, Nemesis.CLOCK, "offset", (2,), 1.0, amount=-750.0)
    faults.start(offset, (2,))
    assert json.loads((control / "n2.json").read_text()) == {"clock": {"offset_ms": -750.0}}
    faults.stop(offset, (2,))
    assert json.loads((control / "n2.json").read_text()) == {}
    slow = Fault(1.0, Nemesis.DISK, "slow", (1,), 1.0, amount=120.0)
    faults.start(slow, (1, 3))
    faults.start(Fault(1.0, Nemesis.DISK, "stall", (2,), 1.0), (2,))
    assert json.loads((control / "n3.json").read_text()) == {"disk": {"fsync_delay_ms": 120.0}}
    assert json.loads((control / "n2.json").read_text()) == {"disk": {"fsync_stall": True}}
    faults.close()
    assert [json.loads(p.read_text()) for p in sorted(control.glob("n*.json"))] == [{}, {}, {}]
    assert not list(control.glob("*.tmp"))


@pytest.mark.parametrize(
    ("kind", "variant"),
    [(k, v) for k in (Nemesis.CLOCK, Nemesis.DISK) for v in VARIANTS[k]],
)
def test_every_clock_and_disk_variant_is_a_valid_control_document(
    kind: Nemesis, variant: str
) -> None:
    doc = fault_document(Fault(1.0, kind, variant, (1,), 1.0, amount=250.0))
    assert parse_faults(json.loads(json.dumps(doc))) != parse_faults({})


def test_other_kinds_are_refused() -> None:
    with pytest.raises(ValueError, match="not a clock or disk fault"):
        fault_document(Fault(1.0, Nemesis.KILL, "node", (1,), 1.0))
