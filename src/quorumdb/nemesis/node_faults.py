"""Placeholder until clock and disk faults land: refuses to run, with one line."""

from __future__ import annotations

from pathlib import Path

from quorumdb.errors import UserError
from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["NodeFaults"]


class NodeFaults:
    kinds = frozenset({Nemesis.CLOCK, Nemesis.DISK})

    def __init__(self, cluster_dir: Path) -> None:
        raise UserError("clock and disk faults are not built yet")

    def node_env(self) -> dict[str, str]:
        return {}

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        raise NotImplementedError

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        pass

    def close(self) -> None:
        pass
