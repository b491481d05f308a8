"""One periodic sweep per event loop drives the timeouts of every connection.

A timer per connection costs a heap entry and a handle object for each idle
client, and re-arming it on activity churns the loop's heap. Here activity
only records a timestamp; a single sweep per loop, every ``interval`` seconds
(at most one second), asks each registered connection whether its time is up.
With 15,000 idle clients a sweep is a few milliseconds of work per second.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Protocol

__all__ = ["Clock", "clock_for"]

#: The longest time between two sweeps, in seconds: the precision of timeouts.
MAX_INTERVAL = 1.0


class Ticking(Protocol):
    """What the clock needs from a connection."""

    def _on_tick(self, now: float) -> None: ...


class Clock:
    """Calls ``_on_tick(now)`` on every registered connection, periodically.

    Args:
        loop: the event loop the connections run on.
    """

    __slots__ = ("__weakref__", "_handle", "_interval", "_loop_ref", "_members")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the clocks are kept by loop in a weak dictionary, and a value
        # that held its key would keep every loop that ever had a connection.
        self._loop_ref = weakref.ref(loop)
        self._members: set[Ticking] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._interval = MAX_INTERVAL

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop of this clock; None once it has been collected."""
        return self._loop_ref()

    def add(self, member: Ticking, interval: float) -> None:
        """Start sweeping ``member``, at least every ``interval`` seconds."""
        self._members.add(member)
        if interval < self._interval:
            self._interval = max(interval, 0.01)
            if self._handle is not None:
                self._handle.cancel()
                self._handle = None
        if self._handle is None:
            loop = self._loop_ref()
            if loop is not None:
                self._handle = loop.call_later(self._interval, self._sweep)

    def discard(self, member: Ticking) -> None:
        """Stop sweeping ``member``; stop the clock when nobody is left."""
        self._members.discard(member)
        if not self._members and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._interval = MAX_INTERVAL

    def __len__(self) -> int:
        return len(self._members)

    def _sweep(self) -> None:
        self._handle = None
        loop = self._loop_ref()
        if loop is None:
            return
        now = loop.time()
        # A connection may close (and leave the set) during its own tick.
        for member in tuple(self._members):
            member._on_tick(now)
        if self._members:
            self._handle = loop.call_later(self._interval, self._sweep)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Clock] = weakref.WeakKeyDictionary()


#: The clock found last: a server's connections share one loop, and checking that it
#: is the same costs less than the weak dictionary's look-up. (Held strongly: a clock
#: holds its loop weakly, so this keeps no loop alive.)
_last: Clock | None = None


def clock_for(loop: asyncio.AbstractEventLoop) -> Clock:
    """The clock of ``loop`` (created on first use)."""
    global _last
    clock = _last
    if clock is not None and clock._loop_ref() is loop:
        return clock
    clock = _clocks.get(loop)
    if clock is None:
        clock = _clocks[loop] = Clock(loop)
    _last = clock
    return clock
