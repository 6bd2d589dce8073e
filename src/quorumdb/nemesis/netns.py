"""Placeholder until the netns network mode lands: refuses to run, with one line."""

from __future__ import annotations

from pathlib import Path

from quorumdb.cli.local_cluster import Layout
from quorumdb.errors import UserError
from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["NamespaceNetwork"]


class NamespaceNetwork:
    kinds = frozenset({Nemesis.PARTITION})

    def __init__(self, workdir: Path, nodes: int, base_port: int) -> None:
        raise UserError("partition faults (netns mode) are not built yet")

    def layout(self) -> Layout:
        raise NotImplementedError

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        raise NotImplementedError

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        pass

    def close(self) -> None:
        pass
