"""The per-loop timeout sweep: one clock per loop, which never keeps its loop alive."""

from __future__ import annotations

import asyncio
import gc
import weakref

from smtpkit._clock import clock_for


class Member:
    def __init__(self) -> None:
        self.ticks: list[float] = []

    def _on_tick(self, now: float) -> None:
        self.ticks.append(now)


def test_one_clock_per_loop() -> None:
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert clock_for(first) is clock_for(first)
        assert clock_for(first) is not clock_for(second)
        assert clock_for(first).loop is first
    finally:
        first.close()
        second.close()


def test_a_clock_sweeps_its_members() -> None:
    loop = asyncio.new_event_loop()
    try:
        member = Member()
        clock = clock_for(loop)
        clock.add(member, 0.01)
        loop.run_until_complete(asyncio.sleep(0.05))
        assert member.ticks
        clock.discard(member)
        assert len(clock) == 0
    finally:
        loop.close()


def test_a_closed_loop_with_a_clock_is_collected() -> None:
    loop = asyncio.new_event_loop()
    member = Member()
    clock = clock_for(loop)
    clock.add(member, 0.5)  # a sweep is pending when the loop goes
    clock.discard(member)
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
    assert clock.loop is None
    clock.add(member, 0.5)  # a clock whose loop is gone schedules nothing
    assert clock._handle is None
