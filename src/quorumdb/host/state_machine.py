"""What a hosted Raft group replicates into: the protocol every state machine implements.

The host knows nothing of KV commands or Kafka batches: it hands each committed normal entry
to `apply_entry`, and if the state machine names the request the entry answers (a
(client, seq) key) the host resolves the futures waiting on it with the result.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ReplicatedStateMachine"]


class ReplicatedStateMachine(Protocol):
    applied: int

    def apply_entry(self, index: int, data: bytes) -> tuple[tuple[int, int], Any] | None:
        """Apply the entry at `index`; return (request key, result), or None (no answer)."""
        ...

    def skip(self, index: int) -> None:
        """`index` held no command (a no-op or a membership change)."""
        ...

    def snapshot(self) -> bytes: ...

    def restore(self, image: bytes) -> None: ...
