"""Clock and disk faults on the nodes of a local cluster, through their fault control files.

Every node of the run is started with `QUORUMDB_FAULT_CONTROL=<cluster>/fault-control`
(`node_env`), and reads its faults from `<that dir>/n<id>.json` (`runtime.fault_control`;
TEST ONLY: a node logs a warning when it runs so). A fault is written into its targets'
files and cleared at its end, each time atomically (a temporary file renamed over the old
one), so a node never reads half a document. The node applies them within a poll interval
(0.1 s): a skewed clock (offset in ms, drift in ppm) and a faulty file system (slow, stalled
or failing fsyncs, or a full disk).

A failing fsync stops the node on purpose, and a full disk usually does too (a WAL write
that fails stops it). When such a fault ends, the nodes it stopped are restarted, with the
fault cleared: the rest of the run then also tests recovery from what a failed fsync left
on disk. `heal` clears every file and restarts them too (as `ProcessFaults.heal` would).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from quorumdb.cli.local_cluster import alive, load_cluster, restart_node
from quorumdb.nemesis.schedule import Fault, Nemesis
from quorumdb.runtime.fault_control import FAULT_CONTROL_ENV, control_file

__all__ = ["NodeFaults", "fault_document"]

# Faults that may stop the node: it is restarted when the fault ends.
_STOPPING = frozenset({"fail", "full"})


def fault_document(fault: Fault) -> dict[str, Any]:
    """The control document that puts `fault` into effect on a node."""
    match (fault.kind, fault.variant):
        case (Nemesis.CLOCK, "offset"):
            return {"clock": {"offset_ms": fault.amount}}
        case (Nemesis.CLOCK, "drift"):
            return {"clock": {"drift_ppm": fault.amount}}
        case (Nemesis.DISK, "slow"):
            return {"disk": {"fsync_delay_ms": fault.amount}}
        case (Nemesis.DISK, "stall"):
            return {"disk": {"fsync_stall": True}}
        case (Nemesis.DISK, "fail"):
            return {"disk": {"fsync_fail": True}}
        case (Nemesis.DISK, "full"):
            return {"disk": {"full": True}}
    raise ValueError(f"not a clock or disk fault: {fault.kind.value} {fault.variant}")


class NodeFaults:
    kinds = frozenset({Nemesis.CLOCK, Nemesis.DISK})

    def __init__(self, cluster_dir: Path) -> None:
        self.cluster_dir = cluster_dir
        self.dir = (cluster_dir / "fault-control").resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._faulted: set[int] = set()  # nodes whose file holds a fault
        self._may_stop: set[int] = set()  # nodes given a fault that may stop them
        self.restarted: list[int] = []  # nodes a fault stopped, restarted when it ended

    def node_env(self) -> dict[str, str]:
        return {FAULT_CONTROL_ENV: str(self.dir)}

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        doc = fault_document(fault)
        with self._lock:
            for node in targets:
                self._write(node, doc)
                self._faulted.add(node)
                if fault.variant in _STOPPING:
                    self._may_stop.add(node)

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        with self._lock:
            for node in targets:
                self._write(node, {})
                self._faulted.discard(node)
            self._restart_stopped()

    def heal(self) -> None:
        """Clear every node's file (those of faults this object did not start too), then
        restart the nodes a fault stopped."""
        with self._lock:
            for path in sorted(self.dir.glob("n*.json")):
                node = path.stem[1:]
                if node.isdigit():
                    self._write(int(node), {})
            self._faulted.clear()
            self._restart_stopped()

    def close(self) -> None:
        self.heal()

    def _write(self, node: int, doc: dict[str, Any]) -> None:
        path = control_file(self.dir, node)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc) + "\n")
        os.replace(tmp, path)

    def _restart_stopped(self) -> None:
        """Restart the nodes that a stopping fault (now cleared) made exit."""
        if not self._may_stop - self._faulted:
            return
        pids = load_cluster(self.cluster_dir).pids
        for node in sorted(self._may_stop - self._faulted):
            self._may_stop.discard(node)
            pid = pids.get(node)
            if pid is not None and not alive(pid):
                restart_node(self.cluster_dir, node)
                self.restarted.append(node)
