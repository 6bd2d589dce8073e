"""Faults on the node processes of a local cluster: kill -9 and restart, pause and resume.

Every fault this module starts it can undo, and `heal` undoes all of them: a run heals on
its way out whatever happened (normal end, Ctrl-C, error), so no node is left stopped.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from quorumdb.cli.local_cluster import alive, load_cluster, restart_node
from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["ProcessFaults"]


class ProcessFaults:
    kinds = frozenset({Nemesis.KILL, Nemesis.PAUSE})

    def __init__(self, cluster_dir: Path) -> None:
        self.dir = cluster_dir
        self.killed: set[int] = set()
        self.paused: set[int] = set()
        self.exited: list[int] = []

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        for node in targets:
            if fault.kind == Nemesis.KILL:
                self.kill(node)
            else:
                self.pause(node)

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        for node in targets:
            if fault.kind == Nemesis.KILL:
                self.restart(node)
            else:
                self.resume(node)

    def _pid(self, node: int) -> int:
        return load_cluster(self.dir).pids[node]

    def kill(self, node: int) -> None:
        pid = self._pid(node)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10.0
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.killed.add(node)

    def restart(self, node: int) -> None:
        restart_node(self.dir, node)
        self.killed.discard(node)

    def pause(self, node: int) -> None:
        os.kill(self._pid(node), signal.SIGSTOP)
        self.paused.add(node)

    def resume(self, node: int) -> None:
        os.kill(self._pid(node), signal.SIGCONT)
        self.paused.discard(node)

    def heal(self) -> None:
        """Resume every paused node and restart every killed one, and any node that exited
        by itself (a failed fsync stops a node on purpose): those are kept in `exited`."""
        for node in sorted(self.paused):
            try:
                self.resume(node)
            except ProcessLookupError:
                self.paused.discard(node)
        for node in sorted(self.killed):
            self.restart(node)
        for node, pid in sorted(load_cluster(self.dir).pids.items()):
            if not alive(pid):
                self.exited.append(node)
                self.restart(node)

    def close(self) -> None:
        self.heal()
