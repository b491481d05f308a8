"""Protocol dialogs without sockets: a fake transport, a virtual clock, scripted talks.

The SMTP protocol is an asyncio protocol: it only ever sees
``connection_made``, ``data_received``, ``eof_received``, ``connection_lost``,
``pause_writing`` and ``resume_writing``, and talks back through its
transport. This module plays the other side of that surface, so a
conversation runs in microseconds and a 300-second timeout in no time at all:

Each part has its module (:mod:`dialog.transport`, :mod:`dialog.clock`,
:mod:`dialog.expect`); this one puts them together and exports them all.

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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from dialog.clock import VirtualClockLoop
from dialog.expect import Expected, check_replies, code, prefix, split_lines
from dialog.transport import FakeTransport

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


# ----------------------------------------------------------------------
# Steps of a dialog: each knows what to do to a dialog (``act``); its
# ``replies`` are what must follow.


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
        return split_lines(data)

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
