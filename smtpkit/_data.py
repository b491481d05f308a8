"""The DATA decoder: raw bytes after ``354`` in, message content out. No I/O.

RFC 5321 §4.1.1.4: the mail data ends with the sequence ``<CRLF>.<CRLF>`` and
nothing else. Bare ``LF`` or bare ``CR`` variants (``\\n.\\n``, ``\\r.\\r``,
``\\r\\n.\\n`` …) never end it: treating them as an end is what makes SMTP
smuggling possible, so here they are ordinary message bytes.

RFC 5321 §4.5.2: a line that starts with a period had one more period put in
front of it by the client ("dot-stuffing"); the receiver removes it.

The decoder works on whole chunks with ``bytes.find`` and ``bytes.replace``
rather than line by line, so a 100 MB message costs a handful of C-level
passes. Both the end marker and a stuffed dot contain a period: a segment
without one (base64 attachments have none) is searched once, with
``memchr``, and copied as it is. The message is treated as if preceded by a
virtual ``CRLF``: that makes an empty message (``.CRLF`` straight after
``354``) and a stuffed dot on the first line fall out of the same rule as
every other line.
"""

from __future__ import annotations

from . import _replies

__all__ = ["LINE_TOO_LONG", "TOO_MUCH_DATA", "DataDecoder"]

END_OF_DATA = b"\r\n.\r\n"
_STUFFED = b"\r\n."
_UNSTUFFED = b"\r\n"
_PERIOD = b"."
_CR = 13

#: Reply when a text line is longer than ``line_length_limit`` (aiosmtpd's text).
LINE_TOO_LONG = _replies.DATA_LINE_TOO_LONG.format()
#: Reply when the message is bigger than ``data_size_limit`` (aiosmtpd's text).
TOO_MUCH_DATA = _replies.TOO_MUCH_DATA.format()


class DataDecoder:
    """Incremental decoder of one DATA transfer.

    Feed it the bytes that follow the ``354`` reply, in pieces of any size.
    Decoded content accumulates in :attr:`chunks` (take it with
    :meth:`take`). Limits are checked as bytes arrive; once one is exceeded the
    content collected so far is dropped and the rest is only scanned for the
    end of data, and :attr:`error` holds the reply to send after it.

    Args:
        size_limit: the most message bytes (as sent, before un-stuffing) to
            accept; ``None`` or ``0`` for no limit.
        line_limit: the longest line, in octets including its ``CRLF``;
            ``None`` or ``0`` for no limit.
    """

    __slots__ = (
        "_line",
        "_skip",
        "_tail",
        "chunks",
        "done",
        "error",
        "line_limit",
        "size",
        "size_limit",
    )

    def __init__(self, size_limit: int | None = None, line_limit: int | None = 1001) -> None:
        self.size_limit = size_limit or 0
        self.line_limit = line_limit or 0
        #: Decoded pieces of the message not yet taken.
        self.chunks: list[bytes] = []
        #: Message bytes seen so far, as sent.
        self.size = 0
        #: The reply to send at the end of data when a limit was exceeded.
        self.error: str | None = None
        #: True once ``<CRLF>.<CRLF>`` was seen.
        self.done = False
        # Bytes held back because they may start a marker; starts as the
        # virtual CRLF before the first line.
        self._tail = _UNSTUFFED
        # How many leading bytes of the next segment are the virtual CRLF.
        self._skip = 2
        # Length of the current, unfinished line.
        self._line = 0

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume the next piece of the transfer.

        Returns:
            ``-1`` when all of ``data`` was consumed and the end of data has
            not been seen yet; otherwise the index in ``data`` just past the
            ``<CRLF>.<CRLF>`` marker (bytes from there on are the client's
            next commands).

        Raises:
            RuntimeError: when called after the end of data.
        """
        if self.done:
            raise RuntimeError("DataDecoder.feed() called after the end of data")
        tail = self._tail
        work = tail + data
        # The end marker and a stuffed dot both have a period; memchr finds
        # the first one. ``stuffed`` is the first "CRLF ." (it may be the
        # end marker's), or -1.
        period = work.find(_PERIOD)
        if period < 0:
            stuffed = end = -1
        else:
            stuffed = work.find(_STUFFED, period - 2 if period > 2 else 0)
            end = -1 if stuffed < 0 else work.find(END_OF_DATA, stuffed)
        if end >= 0:
            self._emit(work, end + 2, stuffed)
            self.done = True
            self._tail = b""
            return end + 5 - len(tail)
        # The last four bytes may be the start of a marker: hold them back.
        cut = len(work) - 4
        # Never split a stuffed "CRLF ." between two segments.
        if cut > 0 and work[cut - 1] == _CR:
            cut -= 1
        elif work[cut - 2 : cut] == _UNSTUFFED:
            cut -= 2
        if cut <= self._skip:
            self._tail = work
            return -1
        self._emit(work, cut, stuffed)
        self._tail = work[cut:]
        return -1

    def take(self) -> bytes:
        """Return and forget the content decoded so far."""
        chunks = self.chunks
        if not chunks:
            return b""
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return data

    @property
    def pending(self) -> int:
        """Number of decoded bytes waiting in :attr:`chunks`."""
        return sum(map(len, self.chunks))

    def _emit(self, work: bytes, stop: int, stuffed: int) -> None:
        skip = self._skip
        self._skip = 0
        size_before = self.size
        self.size += stop - skip
        if self.error is not None:
            return
        carry = self._line
        too_long = bool(self.line_limit) and self._line_too_long(work, skip, stop)
        too_big = bool(self.size_limit) and self.size > self.size_limit
        if too_big and too_long:
            # Both limits broke in this segment: report the one broken first
            # in the stream, so the reply does not depend on how TCP split it.
            too_big = self.size_limit - size_before < self._overflow_at(work, skip, stop, carry)
        if too_big:
            self._fail(TOO_MUCH_DATA)
            return
        if too_long:
            self._fail(LINE_TOO_LONG)
            return
        if 0 <= stuffed <= stop - 3:
            segment = work[:stop].replace(_STUFFED, _UNSTUFFED)
            if skip:
                segment = segment[skip:]
        else:
            # No "CRLF ." before ``stop``: nothing to un-stuff.
            segment = work[skip:stop]
        if segment:
            self.chunks.append(segment)

    def _line_too_long(self, work: bytes, start: int, stop: int) -> bool:
        """Tell whether ``work[start:stop]`` makes a line longer than the limit.

        A line is too long when it has more than ``line_limit`` octets with
        its LF, or when its unfinished part already has more. Rather than
        splitting the segment into lines, look for the last LF within
        ``line_limit`` octets of where the current line started: none means
        the line is too long, one means every line up to it is short enough,
        and the search jumps there. A segment of typical text costs one
        ``rfind`` per kilobyte instead of an object per line.
        """
        limit = self.line_limit
        line_start = start - self._line
        pos = start
        while True:
            # The current line must have its LF before this index.
            deadline = line_start + limit
            if deadline >= stop:
                lf = work.rfind(b"\n", pos, stop)
                self._line = stop - (lf + 1 if lf >= 0 else line_start)
                return False
            lf = work.rfind(b"\n", pos, deadline)
            if lf < 0:
                return True
            line_start = pos = lf + 1

    def _overflow_at(self, work: bytes, start: int, stop: int, line: int) -> int:
        """Offset from ``start`` of the first byte that makes a line too long.

        Only called when :meth:`_line_too_long` found one; ``line`` is the
        length of the unfinished line before ``start``.
        """
        limit = self.line_limit
        pos = start
        while True:
            lf = work.find(b"\n", pos, stop)
            end = stop if lf < 0 else lf + 1
            if line + end - pos > limit:
                return pos + limit - line - start
            pos, line = end, 0

    def _fail(self, reply: str) -> None:
        self.error = reply
        self.chunks.clear()
