"""Log records of a simulated run go into its trace, not to stderr: they are events of the run."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from quorumdb.sim.loop import EventLoop

__all__ = ["logs_in_trace"]


class _TraceHandler(logging.Handler):
    def __init__(self, loop: EventLoop) -> None:
        super().__init__(logging.WARNING)
        self.loop = loop

    def emit(self, record: logging.LogRecord) -> None:
        self.loop.trace(f"log {record.name} {record.getMessage()}")


@contextlib.contextmanager
def logs_in_trace(loop: EventLoop, *names: str) -> Iterator[None]:
    """Send warnings of the `names` loggers (torn tails cut, snapshots skipped, a node that
    failed) to the trace while the run lasts. The level is pinned so that the trace (and its
    digest) does not depend on how the process configured logging."""
    loggers = [logging.getLogger(n) for n in names]
    handler = _TraceHandler(loop)
    saved = [(lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.WARNING)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, (level, propagate) in zip(loggers, saved, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate
