"""`Pending`: the host's answer to a request, given later, without an event loop.

The host is driven synchronously (by the asyncio runtime or by the simulator), so a request
cannot wait on an asyncio future: it gets a `Pending`, which the host completes once (a
result or an error) from its driver, calling the callbacks added so far, or at once for a
callback added later. The runtime turns one into an awaitable (`quorumdb.aio.wait`); the
simulator records the answer in its history.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

__all__ = ["Pending", "spawn"]

_T = TypeVar("_T")
_UNSET = object()


class Pending(Generic[_T]):
    """Completed at most once; later completions are ignored (a request may be answered by
    whichever of several paths gets there first, e.g. its timeout or its application)."""

    __slots__ = ("_callbacks", "_error", "_value")

    def __init__(self) -> None:
        self._value: object = _UNSET
        self._error: BaseException | None = None
        self._callbacks: list[Callable[[Pending[_T]], None]] = []

    def done(self) -> bool:
        return self._value is not _UNSET or self._error is not None

    def set_result(self, value: _T) -> None:
        if not self.done():
            self._value = value
            self._run_callbacks()

    def set_exception(self, error: BaseException) -> None:
        if not self.done():
            self._error = error
            self._run_callbacks()

    def result(self) -> _T:
        """The value, or raise the error; only once done."""
        assert self.done(), "result() of a pending request"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def exception(self) -> BaseException | None:
        assert self.done(), "exception() of a pending request"
        return self._error

    def add_done_callback(self, fn: Callable[[Pending[_T]], None]) -> None:
        if self.done():
            fn(self)
        else:
            self._callbacks.append(fn)

    def __await__(self) -> Generator[Pending[Any], None, _T]:
        """Inside a coroutine driven by `spawn`: wait for the answer."""
        if not self.done():
            yield self
        return self.result()

    def _run_callbacks(self) -> None:
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)


def spawn(coro: Coroutine[Pending[Any], None, _T]) -> Pending[_T]:
    """Run `coro`, which awaits only `Pending`s, as far as it goes now, then on from the
    callbacks of whatever it waits for; the answer is its return value or error.

    So requests that take several steps (a transaction's commit) are written once, as
    plain coroutines, and run the same under the asyncio runtime and the simulator: they
    never touch an event loop, only the host's answers and timers (`sleep`).
    """
    out: Pending[_T] = Pending()

    def step(_: object) -> None:
        try:
            waiting = coro.send(None)
        except StopIteration as stop:
            out.set_result(stop.value)
            return
        except BaseException as exc:  # the coroutine's error is its answer
            out.set_exception(exc)
            return
        waiting.add_done_callback(step)

    step(None)
    return out
