"""Test support for the Raft core: an in-memory cluster driven message by message.

Used by the paper tests, the datadriven interaction tests and the in-process benchmark; it
follows the driver contract of `raft.ready` exactly, with no I/O.
"""

from quorumdb.raft.testing.cluster import Cluster, Filter

__all__ = ["Cluster", "Filter"]
