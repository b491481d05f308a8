"""A thread-safe list of captured messages that tests can wait on.

The server appends from its own thread; tests read, clear and wait from
theirs. Sync waits use a :class:`threading.Condition`; async waits park an
:mod:`asyncio` future of the test's loop, resolved through
``call_soon_threadsafe``, so the test's loop never blocks (on other loops,
such as trio's through anyio, the wait runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from ._messages import CapturedMessage

__all__ = ["Inbox", "MessageWaitTimeout"]


class MessageWaitTimeout(TimeoutError):
    """Fewer messages arrived than a test waited for.

    Attributes:
        expected: how many messages were waited for.
        count: how many had arrived when the wait gave up.
        timeout: the seconds waited.
    """

    def __init__(self, expected: int, count: int, timeout: float) -> None:
        self.expected, self.count, self.timeout = expected, count, timeout
        super().__init__(
            f"waited {timeout:g}s for {expected} message(s) but {count} arrived; "
            "is the client sending to this server's port, and was its mail accepted?"
        )


def _check_wait(n: int, timeout: float) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a whole number of messages, 0 or more; got {n!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
        raise ValueError(f"timeout must be a number of seconds, 0 or more; got {timeout!r}")


class Inbox:
    """The messages one test server captured, in the order they were accepted."""

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._messages: list[CapturedMessage] = []
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def add(self, message: CapturedMessage) -> None:
        """Append a message and wake whoever waits for it (server's thread)."""
        with self._ready:
            self._messages.append(message)
            self._ready.notify_all()
            self._wake_async(len(self._messages))

    def _wake_async(self, count: int) -> None:
        still = []
        for n, loop, future in self._waiters:
            if count >= n:
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(_resolve, future)
            else:
                still.append((n, loop, future))
        self._waiters = still

    def snapshot(self) -> list[CapturedMessage]:
        """A copy of the list as it is now."""
        with self._ready:
            return list(self._messages)

    def clear(self) -> None:
        """Forget every captured message."""
        with self._ready:
            self._messages.clear()

    def wait(self, n: int, timeout: float) -> list[CapturedMessage]:
        """Block until at least ``n`` messages are captured; return them.

        Raises:
            MessageWaitTimeout: fewer than ``n`` arrived within ``timeout`` seconds.
        """
        _check_wait(n, timeout)
        with self._ready:
            if not self._ready.wait_for(lambda: len(self._messages) >= n, timeout):
                raise MessageWaitTimeout(n, len(self._messages), timeout)
            return list(self._messages)

    async def wait_async(self, n: int, timeout: float) -> list[CapturedMessage]:
        """Like :meth:`wait`, without blocking the running event loop.

        On asyncio it waits on a future of the running loop; on another
        event loop (trio, through anyio) the wait runs in a worker thread.
        """
        _check_wait(n, timeout)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            import anyio.to_thread

            return await anyio.to_thread.run_sync(self.wait, n, timeout)
        future: asyncio.Future[None] = loop.create_future()
        with self._ready:
            if len(self._messages) >= n:
                return list(self._messages)
            entry = (n, loop, future)
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            with self._ready:
                raise MessageWaitTimeout(n, len(self._messages), timeout) from None
        finally:
            # Also when the waiting task is cancelled: a waiter left behind
            # would point at a loop that may be closed by the next message.
            with self._ready:
                if entry in self._waiters:
                    self._waiters.remove(entry)
        return self.snapshot()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
