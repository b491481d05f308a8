"""Protocol dialogs without sockets: a fake transport, a virtual clock, scripted talks.

The SMTP protocol is an asyncio protocol: it only ever sees
``connection_made``, ``data_received``, ``eof_received``, ``connection_lost``,
``pause_writing`` and ``resume_writing``, and talks back through its
transport. This module plays the other side of that surface, so a
conversation runs in microseconds and a 300-second timeout in no time at all:

* :class:`FakeTransport` records what the server writes, tells whether it
  closed or aborted, holds back input while reading is paused, and lets a test
  stop the "network" from taking writes (``pause_writing``) or send EOF.
* :class:`VirtualClockLoop` is an ordinary selector event loop whose
  ``time()`` stands still until :meth:`VirtualClockLoop.advance` moves it.
  Everything that is due (the per-loop timeout sweep of ``smtpkit._clock``,
  ``call_later`` callbacks, ``asyncio.sleep``) runs at its virtual moment,
  without waiting.
* :class:`Dialog` connects one server to a fake transport on such a loop, and
  :func:`run_dialog` runs a whole conversation written as a table.

Writing a dialog test
---------------------

Dialog tests live in ``tests/dialog/`` and import this module as
``dialog.harness`` (``dialog.scripts`` holds the usual openings: ``HELO``,
``IN_DATA``, the greeting pattern). A dialog is a list of steps; each step
says what happens and which reply lines the server writes in answer (all of
them, in order, without CRLF)::

    from dialog.harness import CLOSED, Advance, prefix, run_dialog

    from smtpkit.handlers import Sink
    from smtpkit.smtp import SMTP

    run_dialog(
        lambda: SMTP(Sink(), hostname="mx.test"),
        [
            (b"", [prefix("220 mx.test ")]),  # the greeting, on connect
            (b"HELO client.test\\r\\n", ["250 mx.test"]),
            (b"NOOP", []),  # no line end: no reply yet
            (b"\\r\\n", ["250 OK"]),
            Advance(301, ["421 4.4.2 mx.test Error: timeout exceeded"]),
            CLOSED,
        ],
    )

The steps:

``(data, replies)``
    The client sends ``data`` (in one ``data_received`` call; split it over
    several steps to test how the server joins pieces). ``replies`` is what
    the server must have written once everything that could run has run.
``Advance(seconds, replies)``
    Virtual time passes; timers that fall due fire at their moment.
``Eof(replies)``
    The client half-closes its side (``eof_received``).
``PauseWriting(replies)`` / ``ResumeWriting(replies)``
    The client stops reading with the transport's buffer full (the transport
    calls ``pause_writing``; what the server writes then stays unsent, and a
    ``close`` waits for it), and starts again (the unsent bytes leave,
    ``resume_writing``).
``StopReading(replies)``
    The client stops reading while the buffer still has room: writes stay
    unsent, and ``pause_writing`` comes only when more than
    ``transport.high_water`` bytes wait (64 KiB, as in asyncio).
``OPEN``, ``CLOSED``, ``ABORTED``
    Check the connection's state: still open; closed by the server (``close``,
    with everything written delivered) and ``connection_lost`` called;
    aborted (dropped, unsent data thrown away) and ``connection_lost`` called.

An expected reply line is a ``str`` (the exact line) or a compiled pattern
(``re.compile``, matched against the whole line); :func:`prefix` and
:func:`code` build the usual ones, for replies whose text is not the point.

:func:`run_dialog` returns the :class:`Dialog`, so the test can look at the
handler's envelopes or the protocol afterwards; a test that needs steps of
its own uses :class:`Dialog` directly (``with Dialog(factory) as talk:
talk.send(b"...")`` returns the reply lines). At the end the harness fails
the test if the loop reported an unhandled error (an exception in a callback,
a task that failed with nobody to see it) or the server wrote after closing.

The harness drives only the protocol's public asyncio surface, never its
private state, so it holds while the protocol's insides change; tests may of
course look at documented attributes (``protocol.session``, the handler).

Only the asyncio loop can run a virtual clock; the same behaviours on uvloop,
over real sockets and with real clients, are the business of the other test
folders.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

__all__ = [
    "ABORTED",
    "CLOSED",
    "OPEN",
    "Advance",
    "Dialog",
    "Eof",
    "Expected",
    "FakeTransport",
    "PauseWriting",
    "ResumeWriting",
    "Step",
    "StopReading",
    "VirtualClockLoop",
    "check_replies",
    "code",
    "prefix",
    "run_dialog",
]

#: One expected reply line: the exact text, or a pattern the whole line matches.
Expected = str | re.Pattern[str]

#: The addresses a fake transport reports (RFC 5737 documentation addresses).
PEER = ("192.0.2.10", 50025)
SOCKNAME = ("192.0.2.1", 25)
#: asyncio's default high-water mark of a transport's write buffer.
DEFAULT_HIGH_WATER = 64 * 1024
#: Turns of the loop after which "never idle" is taken for a runaway.
MAX_TURNS = 100_000


def prefix(text: str) -> re.Pattern[str]:
    """A pattern for a reply line that starts with ``text`` (``prefix("220 ")``)."""
    return re.compile(re.escape(text) + ".*", re.DOTALL)


def code(number: int | str) -> re.Pattern[str]:
    """A pattern for any reply line with the code ``number``, last line or not."""
    return re.compile(rf"{number}[ -].*|{number}", re.DOTALL)


# ----------------------------------------------------------------------
# The virtual clock


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


# ----------------------------------------------------------------------
# The fake transport


class FakeTransport(asyncio.Transport):
    """The server's side of a connection that exists only in memory.

    Args:
        loop: the loop the protocol runs on (callbacks go through it, as a
            real transport's do).
        protocol: the protocol to drive.
        extra: ``get_extra_info`` values; ``peername`` and ``sockname``
            default to documentation addresses, ``ssl_object`` to None.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.Protocol,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__({"peername": PEER, "sockname": SOCKNAME, **(extra or {})})
        self._loop = loop
        self._protocol = protocol
        #: Bytes the client has received (sent while it was reading).
        self.sent = bytearray()
        #: The argument of each write() call that reached the client, in order.
        self.writes: list[bytes] = []
        #: Bytes written while the client did not read.
        self.unsent = bytearray()
        #: Bytes written after close() or abort(): a server bug.
        self.late_writes = bytearray()
        self.closing = False
        self.aborted = False
        self.lost = False
        self.reading = True
        #: False while the client does not read: writes stay in ``unsent``.
        self.taking_writes = True
        #: True from pause_writing() to resume_writing() of the protocol.
        self.protocol_paused = False
        self.high_water = DEFAULT_HIGH_WATER
        self._held: list[bytes] = []

    # What the protocol calls -------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"write() takes bytes, not {type(data).__name__}")
        if self.closing:
            self.late_writes += data
        elif not self.taking_writes:
            self.unsent += data
            if len(self.unsent) > self.high_water and not self.protocol_paused:
                # As asyncio's transports do, from inside write().
                self.protocol_paused = True
                self._protocol.pause_writing()
        else:
            self.sent += data
            self.writes.append(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        for data in list_of_data:
            self.write(data)

    def can_write_eof(self) -> bool:
        return False

    def close(self) -> None:
        """Close once what is unsent has left (at once when the client reads)."""
        if self.closing:
            return
        self.closing = True
        if not self.unsent:
            self._loop.call_soon(self._lose)

    def abort(self) -> None:
        """Drop the connection and whatever is unsent."""
        if self.closing and not self.unsent:
            return  # closed with everything sent: connection_lost is on its way
        self.closing = True
        self.aborted = True
        self.unsent.clear()
        self._loop.call_soon(self._lose)

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        if self.reading:
            return
        self.reading = True
        held, self._held = self._held, []
        for data in held:
            self._loop.call_soon(self._deliver, data)

    def is_reading(self) -> bool:
        return self.reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if high < 0 or (low is not None and not 0 <= low <= high):
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self.high_water = high

    def get_write_buffer_size(self) -> int:
        return len(self.unsent)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        assert isinstance(protocol, asyncio.Protocol)
        self._protocol = protocol

    # What the test calls (the client's and the network's doings) ------

    def feed(self, data: bytes) -> None:
        """The client sends ``data``; held back while reading is paused."""
        if self.lost:
            raise ConnectionError(f"cannot send {data[:40]!r}: the connection is closed")
        if self.reading:
            self._loop.call_soon(self._deliver, data)
        else:
            self._held.append(data)

    def feed_eof(self) -> None:
        """The client half-closes; the transport closes unless the protocol keeps it."""
        self._loop.call_soon(self._deliver_eof)

    def stop_taking_writes(self, *, full: bool = True) -> None:
        """The client stops reading: what the server writes stays unsent.

        Args:
            full: the transport's buffer is full already, so the protocol is
                paused now; otherwise only once ``high_water`` bytes wait.
        """
        self.taking_writes = False
        if full and not self.protocol_paused:
            self.protocol_paused = True
            self._loop.call_soon(self._protocol.pause_writing)

    def take_writes(self) -> None:
        """The client reads again: the unsent bytes leave, the protocol resumes."""
        self.taking_writes = True
        if self.unsent:
            self.sent += self.unsent
            self.writes.append(bytes(self.unsent))
            self.unsent.clear()
        if self.closing:
            self._loop.call_soon(self._lose)
        elif self.protocol_paused:
            self.protocol_paused = False
            self._loop.call_soon(self._protocol.resume_writing)

    def _deliver(self, data: bytes) -> None:
        if not self.closing:
            self._protocol.data_received(data)

    def _deliver_eof(self) -> None:
        if self.closing:
            return
        keep_open = self._protocol.eof_received()
        if not keep_open:
            self.close()

    def _lose(self) -> None:
        if not self.lost:
            self.lost = True
            self._protocol.connection_lost(None)


# ----------------------------------------------------------------------
# Steps of a dialog


# Each step knows what to do to a dialog (``act``) and which replies follow.


@dataclass(frozen=True)
class _Send:
    """A ``(data, replies)`` step: the client sends ``data`` (nothing when empty)."""

    data: bytes
    replies: Sequence[Expected]

    def act(self, talk: Dialog) -> list[str]:
        return talk.send(self.data) if self.data else talk.replies()


@dataclass(frozen=True)
class Advance:
    """Let ``seconds`` of virtual time pass; the server writes ``replies``."""

    seconds: float
    replies: Sequence[Expected] = ()

    def act(self, talk: Dialog) -> list[str]:
        return talk.advance(self.seconds)


@dataclass(frozen=True)
class Eof:
    """The client half-closes the connection; the server writes ``replies``."""

    replies: Sequence[Expected] = ()

    def act(self, talk: Dialog) -> list[str]:
        return talk.eof()


@dataclass(frozen=True)
class PauseWriting:
    """The client stops reading; ``replies`` is what it still received before."""

    replies: Sequence[Expected] = ()

    def act(self, talk: Dialog) -> list[str]:
        return talk.pause_writing()


@dataclass(frozen=True)
class StopReading:
    """The client stops reading, its buffer not full yet; it received ``replies``."""

    replies: Sequence[Expected] = ()

    def act(self, talk: Dialog) -> list[str]:
        return talk.pause_writing(full=False)


@dataclass(frozen=True)
class ResumeWriting:
    """The client reads again and gets ``replies`` (what waited, and what follows)."""

    replies: Sequence[Expected] = ()

    def act(self, talk: Dialog) -> list[str]:
        return talk.resume_writing()


@dataclass(frozen=True)
class _State:
    name: str


#: The connection is still open.
OPEN = _State("open")
#: The server closed the connection (close, not abort) and connection_lost came.
CLOSED = _State("closed")
#: The server dropped the connection, throwing away what was unsent.
ABORTED = _State("aborted")

Step = (
    tuple[bytes, Sequence[Expected]]
    | Advance
    | Eof
    | PauseWriting
    | StopReading
    | ResumeWriting
    | _State
)


# ----------------------------------------------------------------------
# The dialog


def _split_lines(data: bytes) -> list[str]:
    """Reply lines of ``data``; each must end with CRLF and hold no other CR or LF."""
    if not data:
        return []
    if not data.endswith(b"\r\n"):
        raise AssertionError(f"server output does not end with CRLF: {data[-200:]!r}")
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise AssertionError(f"bare CR or LF in the reply line {line!r}")
    return [line.decode("utf-8", "replace") for line in lines]


def _matches(expected: Expected, line: str) -> bool:
    if isinstance(expected, str):
        return expected == line
    return expected.fullmatch(line) is not None


def _show(expected: Expected) -> str:
    return repr(expected) if isinstance(expected, str) else f"/{expected.pattern}/"


def check_replies(got: Sequence[str], expected: Sequence[Expected], what: str) -> None:
    """Fail, showing both lists, unless ``got`` matches ``expected`` line by line.

    Raises:
        AssertionError: naming the step ``what``, the lines expected and got.
    """
    if len(got) == len(expected) and all(map(_matches, expected, got)):
        return
    shown = ", ".join(map(_show, expected))
    raise AssertionError(f"after {what}:\n  expected [{shown}]\n  got      {list(got)!r}")


@dataclass
class Dialog:
    """One server protocol on a fake transport, driven step by step.

    Args:
        factory: builds the protocol, as for ``loop.create_server``; it is
            called on the running virtual loop (``SMTP()`` finds it there).
        extra: ``get_extra_info`` values for the transport (``peername``…).

    Use it as a context manager (or call :meth:`close`): leaving it drops the
    connection if the server has not, closes the loop, and fails the test if
    the loop saw an unhandled error or the server wrote after closing.
    """

    factory: Callable[[], asyncio.Protocol]
    extra: dict[str, Any] | None = None
    loop: VirtualClockLoop = field(init=False)
    protocol: Any = field(init=False)
    transport: FakeTransport = field(init=False)
    _read: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.loop = VirtualClockLoop()
        try:
            self.protocol = self.loop.run_until_complete(self._build())
        except BaseException:
            self.loop.close()  # the factory refused its settings: no connection
            raise
        self.transport = FakeTransport(self.loop, self.protocol, self.extra)
        self.loop.call_soon(self.protocol.connection_made, self.transport)
        self.loop.run_until_idle()

    async def _build(self) -> asyncio.Protocol:
        return self.factory()

    def __enter__(self) -> Dialog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close(check=kind is None)

    # Steps ---------------------------------------------------------------

    def replies(self) -> list[str]:
        """The reply lines the client received since the last call."""
        data = bytes(self.transport.sent[self._read :])
        self._read = len(self.transport.sent)
        return _split_lines(data)

    def send(self, data: bytes) -> list[str]:
        """The client sends ``data``; return the replies once the server is idle."""
        self.transport.feed(data)
        self.loop.run_until_idle()
        return self.replies()

    def advance(self, seconds: float) -> list[str]:
        """Let ``seconds`` of virtual time pass; return the replies written meanwhile."""
        self.loop.advance(seconds)
        return self.replies()

    def eof(self) -> list[str]:
        """The client half-closes; return the replies written after it."""
        self.transport.feed_eof()
        self.loop.run_until_idle()
        return self.replies()

    def pause_writing(self, *, full: bool = True) -> list[str]:
        """The client stops reading; return what it had received until then.

        Args:
            full: pause the protocol now (the buffer is full), or only when
                the server has written ``high_water`` more bytes.
        """
        self.transport.stop_taking_writes(full=full)
        self.loop.run_until_idle()
        return self.replies()

    def resume_writing(self) -> list[str]:
        """The client reads again; return what waited for it and what followed."""
        self.transport.take_writes()
        self.loop.run_until_idle()
        return self.replies()

    def state(self) -> _State:
        """:data:`OPEN`, :data:`CLOSED` or :data:`ABORTED`, as the client sees it."""
        if self.transport.aborted and self.transport.lost:
            return ABORTED
        if self.transport.lost:
            return CLOSED
        return OPEN

    def run(self, steps: Iterable[Step]) -> None:
        """Play ``steps`` (see the module's documentation), checking each one.

        Raises:
            AssertionError: at the first step whose outcome differs, naming it.
            TypeError: for a step that is none of the documented kinds.
        """
        for number, step in enumerate(steps, 1):
            self._play(number, step)

    def _play(self, number: int, step: Step) -> None:
        if isinstance(step, _State):
            got = self.state()
            if got is not step:
                raise AssertionError(f"step {number}: connection is {got.name}, not {step.name}")
            return
        action = _as_send(number, step) if isinstance(step, tuple) else step
        if not isinstance(action, _ACTIONS):
            raise TypeError(f"step {number}: unknown kind of step {action!r}")
        shown = repr(action.data) if isinstance(action, _Send) else repr(action)
        check_replies(action.act(self), action.replies, f"step {number} ({shown[:80]})")

    # The end -----------------------------------------------------------

    def close(self, check: bool = True) -> None:
        """Drop the connection if still open, close the loop, check for errors.

        Args:
            check: fail on loop errors and late writes (off while another
                failure is already being reported).
        """
        if self.loop.is_closed():
            return
        try:
            if not self.transport.lost:
                self.transport.abort()
            self.loop.run_until_idle()
            self._cancel_leftovers()
        finally:
            self.loop.close()
        if check:
            self._check_clean()

    def _cancel_leftovers(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    def _check_clean(self) -> None:
        if self.loop.errors:
            shown = "; ".join(
                f"{c.get('message')}: {c.get('exception')!r}" for c in self.loop.errors
            )
            raise AssertionError(f"the event loop reported errors: {shown}")
        if self.transport.late_writes:
            raise AssertionError(
                f"the server wrote after closing: {bytes(self.transport.late_writes)[:200]!r}"
            )


_ACTIONS = (_Send, Advance, Eof, PauseWriting, StopReading, ResumeWriting)


def _as_send(number: int, step: tuple[Any, ...]) -> _Send:
    """The step ``(data, replies)``, checked."""
    if len(step) != 2 or not isinstance(step[0], bytes):
        raise TypeError(f"step {number}: expected (bytes, [replies]), not {step!r:.80}")
    if isinstance(step[1], (str, bytes)):
        raise TypeError(f"step {number}: replies must be a list of lines, not {step[1]!r:.80}")
    return _Send(step[0], step[1])


def run_dialog(
    factory: Callable[[], asyncio.Protocol],
    steps: Iterable[Step],
    *,
    extra: dict[str, Any] | None = None,
) -> Dialog:
    """Connect a server from ``factory`` and play the table ``steps`` against it.

    Returns the (closed) :class:`Dialog`: its ``protocol`` and the handler
    the factory used can be examined afterwards.

    Raises:
        AssertionError: at the first step whose replies or state differ.
    """
    with Dialog(factory, extra) as talk:
        talk.run(steps)
    return talk
