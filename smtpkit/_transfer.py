"""One message being received: its decoder, size, rate window and streaming flag. No I/O.

A connection makes a :class:`Transfer` when a message starts (after the
``354`` of DATA) and drops it at the end of data, so an idle connection
carries none of this state. The transfer knows nothing of sockets or
timers: the connection feeds it bytes and tells it the time.

The decoder is what turns the client's bytes into message content. For DATA
it is :class:`smtpkit._data.DataDecoder` (``CRLF.CRLF`` framing,
dot-unstuffing); each BDAT chunk (RFC 3030) has a transfer of its own with
:class:`smtpkit._bdat.ChunkDecoder`, which has the same small interface
(:class:`Decoder`): ``feed(bytes)`` returning the index just past the end of
the message (or chunk) or ``-1``, ``chunks``, ``take()``, ``size``, ``error``
and ``done``, with its limits given when it is made.
"""

from __future__ import annotations

from typing import Protocol

from ._data import DataDecoder

__all__ = ["Decoder", "Transfer"]


class Decoder(Protocol):
    """What a transfer needs of its decoder (see :class:`smtpkit._data.DataDecoder`)."""

    chunks: list[bytes]
    size: int
    error: str | None
    done: bool

    def feed(self, data: bytes | bytearray | memoryview) -> int: ...

    def take(self) -> bytes: ...

    @property
    def pending(self) -> int: ...


class Transfer:
    """The state of one message transfer, from its first byte to its end.

    Args:
        decoder: turns the bytes as sent into content and enforces the limits.
        streaming: whether the handler takes the content chunk by chunk
            (``handle_DATA_CHUNK``) rather than whole at the end.
        now: the loop's time when the transfer starts (its first rate window).
    """

    __slots__ = ("decoder", "rate_since", "rate_size", "streaming")

    def __init__(self, decoder: Decoder, *, streaming: bool, now: float) -> None:
        self.decoder = decoder
        self.streaming = streaming
        #: Start of the current rate window, and the message size then.
        self.rate_since = now
        self.rate_size = 0

    @classmethod
    def for_data(
        cls, size_limit: int | None, line_limit: int | None, *, streaming: bool, now: float
    ) -> Transfer:
        """A transfer for the DATA command (RFC 5321 §4.1.1.4 framing)."""
        return cls(DataDecoder(size_limit, line_limit), streaming=streaming, now=now)

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Give the transfer the next bytes; see :meth:`DataDecoder.feed`."""
        return self.decoder.feed(data)

    @property
    def chunks(self) -> list[bytes]:
        """Content decoded and not yet taken."""
        return self.decoder.chunks

    @property
    def size(self) -> int:
        """Message bytes received so far, as sent."""
        return self.decoder.size

    @property
    def error(self) -> str | None:
        """The reply for a limit that was exceeded, else None."""
        return self.decoder.error

    @property
    def done(self) -> bool:
        """Whether the end of the message was seen."""
        return self.decoder.done

    @property
    def pending(self) -> int:
        """Decoded bytes waiting to be taken."""
        return self.decoder.pending

    def take(self) -> bytes:
        """Return and forget the content decoded so far."""
        return self.decoder.take()

    def restart_window(self, now: float) -> None:
        """Start a new rate window (the server made the client wait)."""
        self.rate_since = now
        self.rate_size = self.decoder.size

    def window_ended(self, now: float, window: float) -> tuple[int, float] | None:
        """When ``window`` seconds have passed: the bytes and seconds of that window.

        A new window starts then. Returns None while the window lasts.
        """
        elapsed = now - self.rate_since
        if elapsed < window:
            return None
        received = self.decoder.size - self.rate_size
        self.restart_window(now)
        return received, elapsed
