"""What a run asks of a fault injector, and the one that sends faults to the right injector.

Each injector owns the faults of some kinds (processes: kill and pause; the network:
partitions; the nodes' clocks and disks) and can undo every fault it started. `heal` undoes
whatever is still in effect and must be safe to call at any time, twice, or after an
error; `close` also removes what the injector built for the run (proxies, namespaces).
"""

from __future__ import annotations

from typing import Protocol

from quorumdb.nemesis.schedule import Fault, Nemesis

__all__ = ["Injector", "Injectors"]


class Injector(Protocol):
    kinds: frozenset[Nemesis]

    def start(self, fault: Fault, targets: tuple[int, ...]) -> None:
        """Begin `fault` on `targets` (its nodes, with the leader chosen for leader variants).
        May block briefly (kill waits for the process to die): the run calls it in a thread."""
        ...

    def stop(self, fault: Fault, targets: tuple[int, ...]) -> None:
        """End `fault` (restart, resume, reconnect, restore)."""
        ...

    def heal(self) -> None:
        """Undo every fault still in effect."""
        ...

    def close(self) -> None:
        """Heal, then remove what the injector set up for the run."""
        ...


class Injectors:
    """The run's injectors, by the kinds they own."""

    def __init__(self, injectors: list[Injector]) -> None:
        self._all = injectors
        self._by_kind = {kind: i for i in injectors for kind in i.kinds}

    def for_kind(self, kind: Nemesis) -> Injector:
        try:
            return self._by_kind[kind]
        except KeyError:
            raise ValueError(f"no injector for {kind.value} faults in this run") from None

    def heal(self) -> None:
        """Heal every injector, even when one of them fails (the first error is raised)."""
        self._each("heal")

    def _each(self, method: str) -> None:
        error: BaseException | None = None
        for injector in self._all:
            try:
                getattr(injector, method)()
            except Exception as exc:  # heal the others before reporting it
                error = error or exc
        if error is not None:
            raise error
