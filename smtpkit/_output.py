"""Output that never blocks the event loop: lines queued here, written by a thread.

A server's standard output and standard error are pipes more often than terminals (a
supervisor, ``| less``, journald). When the reader of such a pipe stops reading, the
pipe fills and a plain ``write`` waits, and so would the event loop calling it: no
greeting for new clients, a stored message never acknowledged. So nothing on the loop
writes to these streams directly:

* :class:`LineWriter` holds a bounded queue of lines and a daemon thread that writes
  them. A full queue drops the line and counts it; once the stream takes a write again,
  the count is reported (``N lines dropped``), and again at shutdown.
* :class:`QueueLogHandler` formats a log record on the caller's thread and hands the
  line to the writer of standard error.
* :func:`writer_for` gives the process's one writer per stream; :func:`drain` (run at
  exit) waits a bounded time for the queued lines to be written.

Log lines and the line per stored message share one time format, :func:`timestamp`:
ISO 8601 with milliseconds and the UTC offset (``2026-12-01T22:11:41.042+00:00``).
"""

from __future__ import annotations

import atexit
import collections
import datetime
import io
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import IO

__all__ = [
    "BATCH_LINES",
    "DRAIN_TIMEOUT",
    "QUEUE_LINES",
    "IsoFormatter",
    "LineWriter",
    "QueueLogHandler",
    "drain",
    "timestamp",
    "writer_for",
]

#: Lines a stream's queue holds before new lines are dropped (and counted): about
#: 200 KB of log, on top of what the pipe itself holds (64 KiB on Linux).
QUEUE_LINES = 1_000
#: Extra room kept for warnings and errors (a drop report among them): a queue full
#: of INFO lines does not swallow them.
URGENT_LINES = 100
#: Lines the thread takes from the queue for one write (so what waits on a blocked
#: stream is bounded too).
BATCH_LINES = 100
#: Seconds the exit waits for queued lines to be written.
DRAIN_TIMEOUT = 5.0
#: Seconds the thread lets lines gather after the first of a burst: one wake-up and
#: one write for many lines, instead of a thread switch per line on a busy server.
GATHER = 0.02

#: Called with the number of lines dropped since the last report; returns a line to
#: write to the same stream, or None when it reported elsewhere.
Reporter = Callable[[int], "str | None"]
#: Called with the error of the first failed write of a run of failures.
ErrorHook = Callable[[Exception], None]


def timestamp(when: float | None = None) -> str:
    """The local time ``when`` (default: now) as ISO 8601 with milliseconds and offset."""
    moment = datetime.datetime.now() if when is None else datetime.datetime.fromtimestamp(when)
    return moment.astimezone().isoformat(timespec="milliseconds")


class IsoFormatter(logging.Formatter):
    """A log formatter whose ``%(asctime)s`` is :func:`timestamp`."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """The record's creation time, as :func:`timestamp`."""
        return timestamp(record.created)


class LineWriter:
    """Write lines to a stream from a thread of its own; :meth:`write` never waits.

    Args:
        stream: returns the stream to write to (looked up before each batch, so a
            replaced ``sys.stdout`` is followed).
        name: what the stream is called in reports (``"stdout"``).
        capacity: lines queued at most; more are dropped and counted.
        report: turns a dropped-line count into a line for this stream (or reports it
            elsewhere and returns None). Default: a plain ``smtpkit: N lines dropped``.
        on_error: called when a write fails after one that succeeded (or the first).
    """

    def __init__(
        self,
        stream: Callable[[], IO[str]],
        name: str,
        *,
        capacity: int = QUEUE_LINES,
        report: Reporter | None = None,
        on_error: ErrorHook | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity = {capacity!r}: expected a positive number of lines")
        self.name = name
        self._stream = stream
        self._capacity = capacity
        self._report = report or self._plain_report
        self._on_error = on_error
        self._lines: collections.deque[str] = collections.deque()
        self._changed = threading.Condition()
        self._closing = False
        self._failing = False
        #: Lines lost so far (queue full, or the write failed), reported or not.
        self.dropped = 0
        self._unreported = 0
        self._thread = threading.Thread(target=self._run, name=f"smtpkit-{name}", daemon=True)
        self._thread.start()

    def write(self, line: str, *, urgent: bool = False) -> bool:
        """Queue one line (without its line ending).

        Args:
            line: the line.
            urgent: a warning or an error: it may use :data:`URGENT_LINES` more room.

        Returns:
            False when the line was dropped: the queue is full or the writer is closed.
        """
        capacity = self._capacity + URGENT_LINES if urgent else self._capacity
        with self._changed:
            if self._closing or len(self._lines) >= capacity:
                self._count_dropped(1)
                return False
            self._lines.append(line)
            self._changed.notify()
        return True

    def close(self, timeout: float = DRAIN_TIMEOUT) -> bool:
        """Stop taking lines and wait up to ``timeout`` seconds for the queue to be written.

        Returns:
            Whether everything queued was written (or dropped and reported) in time.
        """
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (later lines are dropped)."""
        return self._closing

    def _count_dropped(self, count: int) -> None:
        self.dropped += count
        self._unreported += count

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._lines and not self._closing:
                    self._changed.wait()
                gather = not self._closing and len(self._lines) < BATCH_LINES
            if gather:
                time.sleep(GATHER)
            with self._changed:
                if not self._lines:
                    break
                batch = [self._lines.popleft() for _ in range(min(BATCH_LINES, len(self._lines)))]
            if self._emit(batch):
                self._report_drops()
        self._report_drops()

    def _report_drops(self) -> None:
        with self._changed:
            count, self._unreported = self._unreported, 0
        line = self._report(count) if count else None
        if line is None:
            return
        try:
            _write_all(self._stream(), f"{line}\n")
        except (OSError, ValueError):
            with self._changed:
                self._unreported += count  # in the next report, with the lines lost meanwhile

    def _emit(self, lines: list[str]) -> bool:
        """Write ``lines``; on failure count them as dropped. Whether they were written."""
        try:
            _write_all(self._stream(), "".join(f"{line}\n" for line in lines))
        except (OSError, ValueError) as exc:
            with self._changed:
                self._count_dropped(len(lines))
            if not self._failing and self._on_error is not None:
                self._on_error(exc)
            self._failing = True
            return False
        self._failing = False
        return True

    def _plain_report(self, count: int) -> str:
        return f"smtpkit: {count} {_lines(count)} dropped: {self.name} was not being read"


def _lines(count: int) -> str:
    return "line" if count == 1 else "lines"


def _write_all(stream: IO[str], text: str) -> None:
    """Write ``text`` to the file descriptor under ``stream``, or to ``stream`` itself.

    Writing to the descriptor keeps the stream's own lock free: a thread blocked on a
    full pipe must not hold the lock the interpreter takes to flush the stream at exit.
    """
    if stream is None:
        raise ValueError("the stream is None (no console)")
    try:
        fd = stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        stream.write(text)
        stream.flush()
        return
    encoding = getattr(stream, "encoding", None) or "utf-8"
    data = memoryview(text.encode(encoding, "backslashreplace"))
    while data:
        data = data[os.write(fd, data) :]


class QueueLogHandler(logging.Handler):
    """A logging handler that formats on the caller's thread and queues the line.

    Args:
        writer: the writer of the stream the log goes to.
    """

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the formatted record; a full queue drops it (and counts it)."""
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        self.writer.write(line, urgent=record.levelno >= logging.WARNING)

    def dropped_report(self, count: int) -> str:
        """The log line saying ``count`` lines were dropped, in this handler's format."""
        record = logging.LogRecord(
            "smtpkit.output",
            logging.WARNING,
            __file__,
            0,
            "%d log %s dropped: %s was not being read",
            (count, _lines(count), self.writer.name),
            None,
        )
        return self.format(record)


_writers: dict[str, LineWriter] = {}
_writers_lock = threading.Lock()
_drain_at_exit: list[bool] = []


def writer_for(
    name: str,
    stream: Callable[[], IO[str]] | None = None,
    *,
    report: Reporter | None = None,
    on_error: ErrorHook | None = None,
) -> LineWriter:
    """The process's writer called ``name``, started at the first call (or after a drain).

    Args:
        name: ``"stdout"`` and ``"stderr"`` follow ``sys.stdout``/``sys.stderr``;
            any other name needs ``stream``.
        stream: returns the stream (only used when the writer is created).
        report: see :class:`LineWriter` (only used when the writer is created).
        on_error: see :class:`LineWriter` (only used when the writer is created).

    Returns:
        The writer; it is drained at exit (see :func:`drain`).
    """
    with _writers_lock:
        writer = _writers.get(name)
        if writer is None or writer.closed:
            source = stream or _standard_stream(name)
            writer = LineWriter(source, name, report=report, on_error=on_error)
            _writers[name] = writer
        if not _drain_at_exit:
            atexit.register(drain)
            _drain_at_exit.append(True)
        return writer


def _standard_stream(name: str) -> Callable[[], IO[str]]:
    if name == "stdout":
        return lambda: sys.stdout
    if name == "stderr":
        return lambda: sys.stderr
    raise ValueError(f"writer {name!r}: give its stream (only 'stdout' and 'stderr' are known)")


def drain(timeout: float = DRAIN_TIMEOUT) -> bool:
    """Close every writer, waiting up to ``timeout`` seconds in all for queued lines.

    Standard error is closed last, so the losses of the others can still be logged.

    Returns:
        Whether every writer finished in time.
    """
    with _writers_lock:
        writers = sorted(_writers.values(), key=lambda writer: writer.name == "stderr")
    deadline = time.monotonic() + timeout
    finished = True
    for writer in writers:
        finished = writer.close(max(deadline - time.monotonic(), 0.0)) and finished
    return finished
