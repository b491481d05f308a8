"""The harness itself: virtual time, the fake transport, and failing when it should."""

from __future__ import annotations

import asyncio
import re
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dialog import clock, harness
from dialog.harness import (
    ABORTED,
    CLOSED,
    OPEN,
    Advance,
    Dialog,
    FakeTransport,
    VirtualClockLoop,
    check_replies,
    code,
    prefix,
    run_dialog,
)
from dialog.scripts import GREETING, HELO, server


@pytest.fixture
def loop() -> Iterator[VirtualClockLoop]:
    virtual = VirtualClockLoop()
    yield virtual
    virtual.close()


def test_timers_fire_at_their_virtual_moment(loop: VirtualClockLoop) -> None:
    fired: list[tuple[str, float]] = []
    loop.call_later(5, lambda: fired.append(("five", loop.time())))
    loop.call_later(2, lambda: fired.append(("two", loop.time())))
    loop.advance(1.5)
    assert fired == []
    loop.advance(3.5)
    assert fired == [("two", 2.0), ("five", 5.0)]
    assert loop.time() == 5.0


def test_a_timer_set_by_a_timer_fires_within_the_same_advance(loop: VirtualClockLoop) -> None:
    seen: list[float] = []

    def tick() -> None:
        seen.append(loop.time())
        if len(seen) < 4:
            loop.call_later(1, tick)

    loop.call_later(1, tick)
    loop.advance(10)
    assert seen == [1.0, 2.0, 3.0, 4.0]


def test_a_cancelled_timer_does_not_fire(loop: VirtualClockLoop) -> None:
    fired: list[float] = []
    handle = loop.call_later(1, lambda: fired.append(loop.time()))
    handle.cancel()
    loop.advance(2)
    assert fired == []


def test_a_long_sleep_costs_no_real_time(loop: VirtualClockLoop) -> None:
    woke: list[float] = []

    async def sleeper() -> None:
        await asyncio.sleep(3600)
        woke.append(loop.time())

    task = loop.create_task(sleeper())
    started = time.monotonic()
    loop.advance(3599)
    assert woke == []
    loop.advance(1)
    assert woke == [3600.0]
    assert task.done()
    # Generous: an hour of virtual time must not be spent for real.
    assert time.monotonic() - started < 5


def test_advance_refuses_to_go_back(loop: VirtualClockLoop) -> None:
    with pytest.raises(ValueError, match="seconds >= 0"):
        loop.advance(-1)


def test_a_loop_that_never_goes_idle_is_reported(
    loop: VirtualClockLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clock, "MAX_TURNS", 1000)

    def again() -> None:
        loop.call_soon(again)

    loop.call_soon(again)
    with pytest.raises(RuntimeError, match="still busy"):
        loop.run_until_idle()


class Echo(asyncio.Protocol):
    """Writes back what it gets; closes on b"bye"; records the callbacks."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.events.append(f"data {data!r}")
        if data == b"bye":
            self.transport.close()
        else:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return False

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: Exception | None) -> None:
        self.events.append("lost")


def test_transport_holds_input_while_reading_is_paused(loop: VirtualClockLoop) -> None:
    echo = Echo()
    transport = FakeTransport(loop, echo)
    echo.connection_made(transport)
    transport.pause_reading()
    transport.feed(b"one")
    loop.run_until_idle()
    assert echo.events == ["made"]
    transport.resume_reading()
    loop.run_until_idle()
    assert echo.events == ["made", "data b'one'"]
    assert bytes(transport.sent) == b"one"


def test_transport_keeps_writes_of_a_client_that_does_not_read(loop: VirtualClockLoop) -> None:
    echo = Echo()
    transport = FakeTransport(loop, echo)
    echo.connection_made(transport)
    transport.stop_taking_writes()
    transport.feed(b"ping")
    loop.run_until_idle()
    assert (bytes(transport.sent), bytes(transport.unsent)) == (b"", b"ping")
    assert transport.get_write_buffer_size() == 4
    transport.feed(b"bye")
    loop.run_until_idle()
    # Closed, but what is unsent has not left: connection_lost waits for it.
    assert transport.is_closing() and echo.events[-1] != "lost"
    transport.take_writes()
    loop.run_until_idle()
    assert bytes(transport.sent) == b"ping"
    assert echo.events == ["made", "pause", "data b'ping'", "data b'bye'", "lost"]


def test_transport_abort_throws_unsent_bytes_away(loop: VirtualClockLoop) -> None:
    echo = Echo()
    transport = FakeTransport(loop, echo)
    echo.connection_made(transport)
    transport.stop_taking_writes()
    transport.write(b"lost")
    transport.abort()
    loop.run_until_idle()
    assert (bytes(transport.sent), bytes(transport.unsent)) == (b"", b"")
    assert transport.aborted and echo.events[-1] == "lost"


def test_transport_eof_closes_unless_the_protocol_keeps_it(loop: VirtualClockLoop) -> None:
    echo = Echo()
    transport = FakeTransport(loop, echo)
    echo.connection_made(transport)
    transport.feed_eof()
    loop.run_until_idle()
    assert echo.events == ["made", "eof", "lost"]
    with pytest.raises(ConnectionError, match="closed"):
        transport.feed(b"late")


def test_transport_extra_info() -> None:
    loop = VirtualClockLoop()
    try:
        transport = FakeTransport(loop, Echo(), {"peername": ("198.51.100.7", 4000)})
        assert transport.get_extra_info("peername") == ("198.51.100.7", 4000)
        assert transport.get_extra_info("sockname") == ("192.0.2.1", 25)
        assert transport.get_extra_info("ssl_object") is None
        assert transport.get_extra_info("cipher", "none") == "none"
    finally:
        loop.close()


def test_patterns() -> None:
    assert prefix("220 mx").fullmatch("220 mx.test ready")
    assert not prefix("220 mx").fullmatch("221 mx.test")
    assert code(250).fullmatch("250-SIZE 10") and code(250).fullmatch("250 OK")
    assert not code(250).fullmatch("2500 OK")


@pytest.mark.parametrize(
    ("got", "expected"),
    [
        (["250 OK"], ["250 OK", "250 OK"]),
        (["250 OK", "250 OK"], ["250 OK"]),
        (["251 OK"], ["250 OK"]),
        (["250 OK"], [re.compile("25")]),
        ([], ["250 OK"]),
    ],
)
def test_check_replies_fails_on_any_difference(got: list[str], expected: list[str]) -> None:
    with pytest.raises(AssertionError, match="expected"):
        check_replies(got, expected, "a step")


def test_a_wrong_reply_fails_the_dialog_naming_the_step() -> None:
    with pytest.raises(AssertionError, match=r"step 2 .*NOOP.*\n.*'251 OK'.*\n.*'250 OK'"):
        run_dialog(server(), [(b"", [GREETING]), (b"NOOP\r\n", ["251 OK"])])


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ((b"NOOP\r\n", "250 OK"), "replies must be a list"),
        (("NOOP\r\n", ["250 OK"]), r"expected \(bytes, \[replies\]\)"),
        ((b"NOOP\r\n",), r"expected \(bytes, \[replies\]\)"),
        (301, "unknown kind of step 301"),
    ],
)
def test_a_malformed_step_is_refused_naming_it(step: Any, message: str) -> None:
    with pytest.raises(TypeError, match=rf"step 2: {message}"):
        run_dialog(server(), [(b"", [GREETING]), step])


def test_a_wrong_state_fails_the_dialog() -> None:
    with pytest.raises(AssertionError, match="step 3: connection is open, not closed"):
        run_dialog(server(), [*HELO, CLOSED])


def test_state_steps() -> None:
    talk = run_dialog(
        server(timeout=5),
        [*HELO, OPEN, Advance(6, [prefix("421 ")]), CLOSED],
    )
    assert talk.state() is CLOSED
    assert talk.loop.is_closed()


def test_an_error_on_the_loop_fails_the_dialog() -> None:
    class Broken(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            raise RuntimeError("broken on purpose")

    with pytest.raises(AssertionError, match="broken on purpose"):
        run_dialog(Broken, [])


def test_a_write_after_close_fails_the_dialog() -> None:
    class Chatty(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.close()
            transport.write(b"too late\r\n")

    with pytest.raises(AssertionError, match="wrote after closing"):
        run_dialog(Chatty, [CLOSED])


def test_leaving_drops_an_open_connection() -> None:
    with Dialog(server()) as talk:
        (greeting,) = talk.replies()
        assert GREETING.fullmatch(greeting)
        protocol = talk.protocol
    assert talk.state() is ABORTED
    assert protocol.transport is None  # connection_lost reached the server


def test_a_task_that_fails_unseen_fails_the_dialog() -> None:
    class Careless(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            async def boom() -> None:
                raise ValueError("failed unseen")

            self.task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(boom())

        def data_received(self, data: bytes) -> None:
            self.task = None  # the last reference: the failure is reported now

    with pytest.raises(AssertionError, match=r"never retrieved.*failed unseen"):
        run_dialog(Careless, [(b"x", [])])


def test_the_documented_example_runs() -> None:
    assert harness.__doc__ is not None
    example = harness.__doc__.split("::\n", 1)[1].split("\nThe steps:", 1)[0]
    exec(textwrap.dedent(example), {})


def test_a_factory_that_raises_raises_from_the_dialog() -> None:
    with pytest.raises(ValueError, match=r"timeout.*-1"):
        Dialog(server(timeout=-1))
