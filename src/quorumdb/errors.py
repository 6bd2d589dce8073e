"""The root of quorumdb's error hierarchy (STYLE.md §5.5).

Layers raise the most specific subclass they own; the CLI catches `QuorumError` once in
`main()` and prints one line. `check/` stays independent of this module on purpose: it works
on plain histories and raises its own `ValueError` subclasses, which the CLI translates.
"""

from __future__ import annotations

__all__ = ["QuorumError", "ServiceUnavailableError", "UserError"]


class QuorumError(Exception):
    """Root of every error quorumdb raises on purpose; never raised directly."""


class ServiceUnavailableError(QuorumError):
    """No quorum, or the request did not complete in time; safe to retry with the same id.

    Raised by the host (a request's deadline passed) and the services over it (the KV API
    answers it with a 503). Lives here because both layers raise it.
    """


class UserError(QuorumError):
    """A CLI-facing error: a message, an optional hint, and the exit status to use."""

    def __init__(self, message: str, *, hint: str | None = None, exit_status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_status = exit_status

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message
