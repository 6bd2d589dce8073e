"""quorumdb: replication, consensus, quorums, transactions and failure recovery as one system.

`quorumdb.Client` and `quorumdb.AsyncClient` (the KV clients) are loaded on first use, so
importing the package for the Raft core or the simulator does not pull in the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["AsyncClient", "Client", "__version__"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from quorumdb.kv.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from quorumdb.kv import client

        return getattr(client, name)
    raise AttributeError(f"module 'quorumdb' has no attribute {name!r}")
