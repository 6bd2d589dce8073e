"""What can go wrong with a transaction request, in the service's vocabulary.

`kv.api` turns each into an HTTP status (a serialization failure is a 409 with SQLSTATE
40001 and `retryable`, which `kv.client.run_transaction` retries); the coordinator
(`kv.transactions`) raises them.
"""

from __future__ import annotations

from quorumdb.errors import QuorumError, ServiceUnavailableError

__all__ = [
    "CommitOutcomeUnknownError",
    "SerializationFailureError",
    "TxnBusyError",
    "TxnClosedError",
    "TxnError",
    "TxnNotFoundError",
    "TxnTooLargeError",
]


class TxnError(QuorumError):
    """A transaction request that cannot be served as asked."""


class SerializationFailureError(TxnError):
    """The transaction was aborted to keep its isolation level: retry it (SQLSTATE 40001)."""

    sqlstate = "40001"


class TxnNotFoundError(TxnError):
    """No transaction with this id was begun on this node."""


class TxnClosedError(TxnError):
    """The transaction was committed, aborted or has expired: no more operations."""


class TxnBusyError(TxnError):
    """Another request of the same transaction is still running."""


class TxnTooLargeError(TxnError):
    """The transaction writes more keys or bytes than one commit may carry."""


class CommitOutcomeUnknownError(ServiceUnavailableError):
    """The commit was sent but its outcome could not be learned (the cluster is unavailable):
    it may or may not have committed."""
