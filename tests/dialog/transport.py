"""A fake asyncio transport for dialog tests: one connection, in memory.

See :mod:`dialog.harness` for how dialogs use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["DEFAULT_HIGH_WATER", "PEER", "SOCKNAME", "FakeTransport"]

#: The addresses a fake transport reports (RFC 5737 documentation addresses).
PEER = ("192.0.2.10", 50025)
SOCKNAME = ("192.0.2.1", 25)
#: asyncio's default high-water mark of a transport's write buffer.
DEFAULT_HIGH_WATER = 64 * 1024


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
