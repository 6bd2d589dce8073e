"""Port ranges for local clusters started side by side (tests, `quorumdb test`, benches).

A range is reserved with a lock file for the cluster's life: a node killed with -9 leaves
its ports free for a moment, and a cluster started by another process must not take them
(its nodes would answer our clients, or keep ours from restarting). Ranges lie below the
kernel's ephemeral ports (32768+), so no client socket takes a listener port between the
check and the bind.
"""

from __future__ import annotations

import fcntl
import random
import tempfile
from pathlib import Path
from typing import IO

from quorumdb.cli.local_cluster import KAFKA_PORT_OFFSET, port_free

__all__ = ["reserve_base_port"]

_LOCK_DIR = Path(tempfile.gettempdir()) / "quorumdb-e2e-ports"
_OFFSETS = (0, 100, KAFKA_PORT_OFFSET)  # HTTP, Raft, Kafka listeners


def _reserve(base: int) -> IO[bytes] | None:
    """Lock range `base` for as long as the returned file stays open (or the process lives);
    None if another process holds it."""
    _LOCK_DIR.mkdir(exist_ok=True)
    lock = (_LOCK_DIR / f"{base}.lock").open("wb")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def reserve_base_port(nodes: int = 5, extra: tuple[int, ...] = ()) -> tuple[int, IO[bytes]]:
    """A base port whose listener ports (and `extra` offsets from it) are free now, and its
    reservation: close the file to release it."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10_000, 32_768 - KAFKA_PORT_OFFSET - nodes - 1, 200)
        lock = _reserve(base)
        if lock is None:
            continue
        ports = [base + offset + i for offset in _OFFSETS for i in range(1, nodes + 1)]
        if all(port_free(p) for p in [*ports, *(base + e for e in extra)]):
            return base, lock
        lock.close()
    raise RuntimeError("no free port range found on loopback")
