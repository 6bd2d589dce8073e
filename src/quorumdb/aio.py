"""asyncio glue for the code that serves clients (the KV service, the Kafka backend, the
runtime): awaiting the host's `Pending` answers. The host itself never imports asyncio."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from quorumdb.host.pending import Pending

__all__ = ["wait"]

_T = TypeVar("_T")


async def wait(p: Pending[_T]) -> _T:
    """The answer of `p` once the host gives it (cancelling the wait leaves `p` alone)."""
    if p.done():
        return p.result()
    fut: asyncio.Future[_T] = asyncio.get_running_loop().create_future()

    def settle(done: Pending[_T]) -> None:
        if fut.done():
            return
        error = done.exception()
        if error is not None:
            fut.set_exception(error)
        else:
            fut.set_result(done.result())

    p.add_done_callback(settle)
    return await fut
