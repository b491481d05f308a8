"""A virtual clock for dialog tests: an event loop whose time moves when told.

See :mod:`dialog.harness` for how dialogs use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

__all__ = ["MAX_TURNS", "VirtualClockLoop"]

#: Turns of the loop after which "never idle" is taken for a runaway.
MAX_TURNS = 100_000


class VirtualClockLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock moves only when the test says so.

    ``time()`` starts at 0.0. :meth:`run_until_idle` runs every callback and
    task step that is ready; :meth:`advance` moves the clock forward, stopping
    at each timer on the way so that it runs at its own moment.

    The loop never waits in ``select`` for a timer: while it runs, the helper
    coroutine driving it always has a step ready. Idleness is read from the
    base loop's ready queue and timer heap (``_ready``, ``_scheduled``),
    which every asyncio since 3.4 keeps under these names. Work handed to a
    thread (``run_in_executor``, ``anyio.to_thread``) is not waited for:
    dialogs are for code that runs on the loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self._virtual_now = 0.0
        #: What the loop's exception handler was given (context dicts).
        self.errors: list[dict[str, Any]] = []
        self.set_exception_handler(self._record_error)

    def time(self) -> float:
        return self._virtual_now

    def _record_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.errors.append(context)

    def _next_timer(self) -> float | None:
        """When the earliest timer that is still wanted falls due."""
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        return min((h.when() for h in scheduled if not h.cancelled()), default=None)

    def _busy(self) -> bool:
        ready: Sequence[asyncio.Handle] = self._ready  # type: ignore[attr-defined]
        if any(not handle.cancelled() for handle in ready):
            return True
        due = self._next_timer()
        return due is not None and due <= self._virtual_now

    async def _until_idle(self) -> None:
        # Each sleep(0) lets everything scheduled before it run once; the
        # loop is idle when, back here, nothing else is ready or due.
        await asyncio.sleep(0)
        for _ in range(MAX_TURNS):
            if not self._busy():
                return
            await asyncio.sleep(0)
        raise RuntimeError(
            f"the loop was still busy after {MAX_TURNS} turns at t={self._virtual_now}: "
            "a callback that reschedules itself without end?"
        )

    def run_until_idle(self) -> None:
        """Run until no callback is ready and no timer is due (time stands still)."""
        self.run_until_complete(self._until_idle())

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, running what falls due on the way.

        Raises:
            ValueError: when ``seconds`` is negative (time does not go back).
        """
        if seconds < 0:
            raise ValueError(f"advance() takes seconds >= 0, not {seconds!r}")
        target = self._virtual_now + seconds
        self.run_until_idle()
        while True:
            due = self._next_timer()
            if due is None or due > target:
                break
            self._virtual_now = max(self._virtual_now, due)
            self.run_until_idle()
        self._virtual_now = target
        self.run_until_idle()
