"""Call registered functions without blocking the event loop.

Coroutine functions are awaited as they are. Plain functions run in a worker
thread with :func:`anyio.to_thread.run_sync` (anyio's default pool of 40
threads), so a slow database lookup or a blocking disk write in a plain
``def`` hook holds up only its own session.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio.to_thread

__all__ = ["AsyncCall", "is_async", "to_async"]

AsyncCall = Callable[..., Awaitable[Any]]


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (a function or callable object)."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - the method itself is what counts
    )


def to_async(func: Callable[..., Any]) -> AsyncCall:
    """Return ``func`` itself when it is async, else a coroutine running it in a thread.

    A plain function that returns an awaitable anyway (a wrapped coroutine
    function) has that awaitable awaited on the event loop.
    """
    if is_async(func):
        return func

    @functools.wraps(func)
    async def in_thread(*args: Any) -> Any:
        result = await anyio.to_thread.run_sync(func, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    return in_thread
