"""Client sessions for at-most-once writes, safe for a client with many writes in flight.

Why a pool. The KV state machine keeps, per client id, the last `seq` it applied and its
result (Raft thesis §6.3): a retry of that `seq` gets the stored result, and an older `seq`
is taken for a stale duplicate and ignored. That is exact only while a client id has one
write outstanding: with two in flight under one id, the later `seq` can be applied first,
and the earlier write is then dropped without an answer. So a write borrows a session (an
id of its own and that id's next `seq`) for as long as it is in flight, retries included,
and gives it back when answered; concurrent writes use different ids, and the number of
ids a client ever uses is its peak concurrency.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol

__all__ = ["RandomSource", "SessionPool"]


class RandomSource(Protocol):
    def getrandbits(self, k: int, /) -> int: ...


class SessionPool:
    """Sessions (client id, last seq) lent one write at a time; thread-safe."""

    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self._free: list[list[int]] = []  # [client id, last seq used]
        self._lock = threading.Lock()

    def acquire(self) -> tuple[int, int, Callable[[], None]]:
        """(client id, seq, release) for one write: no other write uses the id until
        `release()` is called (once, when the write is answered or given up)."""
        with self._lock:
            session = self._free.pop() if self._free else [self._rng.getrandbits(62) + 1, 0]
            session[1] += 1

        def release() -> None:
            with self._lock:
                self._free.append(session)

        return session[0], session[1], release

    @contextmanager
    def lease(self) -> Iterator[tuple[int, int]]:
        """`acquire` for the length of a `with` block."""
        client, seq, release = self.acquire()
        try:
            yield client, seq
        finally:
            release()
