"""quorumdb: replication, consensus, quorums, transactions and failure recovery as one system."""

__all__ = ["__version__"]

__version__ = "0.1.0"
