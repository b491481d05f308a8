"""CHUNKING (RFC 3030): the BDAT command's argument, its chunk decoder, its replies. No I/O.

``BDAT <size> [LAST]`` is followed by exactly ``size`` octets of message
content: no dot-stuffing, no end marker, no line-length rule. A message is
one or more chunks; the one sent with ``LAST`` ends it.

:class:`ChunkDecoder` reads one chunk. It has the small interface a
:class:`smtpkit._transfer.Transfer` needs of its decoder, so the connection
feeds a chunk exactly as it feeds DATA (the same phase, the same rate and idle
timeouts, the same streaming to ``handle_DATA_CHUNK``). :class:`ChunkedMessage`
is what lasts from one chunk to the next of a transaction: the size so far,
the content not streamed, and whether a chunk was refused.

A chunk that would take the message past the size limit is refused at once:
its octets are still read (the client sends them whatever the reply) but
counted and dropped, never kept.
"""

from __future__ import annotations

import re

from ._replies import Reply

__all__ = [
    "BAD_SIZE",
    "BAD_SYNTAX",
    "BINARY_NEEDS_BDAT",
    "CHUNK_RECEIVED",
    "DATA_AFTER_BDAT",
    "EARLIER_CHUNK_FAILED",
    "NO_VALID_RECIPIENTS",
    "TOO_MUCH_DATA",
    "ChunkDecoder",
    "ChunkedMessage",
    "parse_bdat",
]

#: The reply to a chunk that is not the last.
CHUNK_RECEIVED = Reply(250, "2.0.0", "{size} octets received")
#: ``BDAT`` whose size is not a number: where the chunk ends cannot be known,
#: so the connection is closed (as Postfix does).
BAD_SIZE = Reply(521, "5.5.4", "Syntax: BDAT <size> [LAST]; closing the connection", True)
#: ``BDAT <size> <something other than LAST>``: the octets are read and dropped.
BAD_SYNTAX = Reply(501, "5.5.4", "Syntax: BDAT <size> [LAST]", True)
#: BDAT with MAIL accepted but no recipient (as DATA would be, Postfix's code).
NO_VALID_RECIPIENTS = Reply(554, "5.5.1", "Error: no valid recipients", True)
#: A later chunk of a transaction whose earlier chunk was refused.
EARLIER_CHUNK_FAILED = Reply(
    554, "5.5.0", "Error: chunk discarded after an earlier error; send RSET", True
)
#: DATA in a transaction that BDAT started (RFC 3030 §2).
DATA_AFTER_BDAT = Reply(503, "5.5.1", "Error: DATA after BDAT in one transaction", True)
#: DATA for a ``BODY=BINARYMIME`` message (RFC 3030 §3: it must come by BDAT).
BINARY_NEEDS_BDAT = Reply(503, "5.5.1", "Error: BODY=BINARYMIME requires BDAT", True)
#: The message grew past ``data_size_limit`` (the same text as DATA's).
TOO_MUCH_DATA = Reply(552, "5.3.4", "Error: Too much mail data")

# RFC 3030 §2: bdat-cmd = "BDAT" SP chunk-size [ SP end-marker ] CR LF,
# chunk-size = 1*DIGIT, end-marker = "LAST".
_ARGUMENT = re.compile(r"([0-9]+)(?: +(.+))?")


def parse_bdat(arg: str | None) -> tuple[int, bool] | int | None:
    """Parse BDAT's argument.

    Returns:
        ``(size, last)`` for a valid argument; the size alone when the size
        is a number but what follows is not ``LAST`` (the chunk must still be
        read); None when there is no size to be read.
    """
    match = _ARGUMENT.fullmatch(arg.strip()) if arg else None
    if match is None:
        return None
    size = int(match.group(1))
    marker = match.group(2)
    if marker is None:
        return size, False
    if marker.upper() == "LAST":
        return size, True
    return size


class ChunkDecoder:
    """Reads exactly one chunk of ``length`` octets.

    Args:
        length: the chunk size BDAT announced.
        size_before: the message's size before this chunk (earlier chunks).
        size_limit: the most octets the whole message may have; ``None`` or
            ``0`` for no limit.
        keep: False to read the octets and drop them (a refused BDAT).
    """

    __slots__ = ("chunks", "done", "error", "keep", "remaining", "size")

    def __init__(
        self, length: int, *, size_before: int = 0, size_limit: int | None = None, keep: bool = True
    ) -> None:
        #: Content read and not yet taken.
        self.chunks: list[bytes] = []
        #: The message's size so far, earlier chunks included.
        self.size = size_before
        #: Octets of this chunk still to come.
        self.remaining = length
        #: The reply for a size limit this chunk breaks, else None.
        self.error: str | None = None
        if size_limit and size_before + length > size_limit:
            self.error = TOO_MUCH_DATA.format()
            keep = False
        self.keep = keep
        #: True once the whole chunk was read.
        self.done = length == 0

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume the next octets.

        Returns:
            ``-1`` when all of ``data`` belongs to the chunk and more is to
            come; otherwise the index in ``data`` just past the chunk's end
            (the octets from there on are the client's next commands).

        Raises:
            RuntimeError: when called after the end of the chunk.
        """
        if self.done:
            raise RuntimeError("ChunkDecoder.feed() called after the end of the chunk")
        take = min(len(data), self.remaining)
        if self.keep and take:
            self.chunks.append(bytes(data[:take]))
        self.remaining -= take
        self.size += take
        if self.remaining:
            return -1
        self.done = True
        return take

    def take(self) -> bytes:
        """Return and forget the content read so far."""
        chunks = self.chunks
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        return data

    @property
    def pending(self) -> int:
        """Octets read and not yet taken."""
        return sum(map(len, self.chunks))


class ChunkedMessage:
    """A message arriving by BDAT, from its first chunk to its last.

    Attributes:
        envelope: the transaction (envelope object) the chunks belong to;
            when the connection's envelope is another one, this message is
            over.
        size: octets received so far, every chunk counted.
        parts: content kept for ``envelope.content`` (empty when streamed).
        failed: the reply of the refused chunk, or None; once set, every
            later chunk of the transaction is refused too.
    """

    __slots__ = ("envelope", "failed", "parts", "size")

    def __init__(self, envelope: object) -> None:
        self.envelope = envelope
        self.size = 0
        self.parts: list[bytes] = []
        self.failed: str | None = None

    def content(self) -> bytes:
        """The whole content kept, joined once."""
        parts = self.parts
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        parts.clear()
        return data
