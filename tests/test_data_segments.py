"""The DATA decoder on big reads: where the first period falls decides the search.

A read with no period at all holds neither the end marker nor a stuffed dot
and is copied as it is; a read with one is searched from it. Whatever the
read holds, and wherever it is cut, the content must be the same as decoding
it byte by byte.
"""

from __future__ import annotations

import itertools

import pytest

from smtpkit._data import LINE_TOO_LONG, DataDecoder

LINE = b"A" * 76 + b"\r\n"
BLOCK = LINE * 3000  # about 230 KiB, as one read of a fast upload


def decode(segments: list[bytes], line_limit: int | None = 1001) -> tuple[bytes, int, str | None]:
    """Feed ``segments``; return (content, end index in the stream or -1, error)."""
    decoder = DataDecoder(None, line_limit)
    offset = 0
    for segment in segments:
        found = decoder.feed(segment)
        if found >= 0:
            return decoder.take(), offset + found, decoder.error
        offset += len(segment)
    return decoder.take(), -1, decoder.error


def expected(stream: bytes) -> tuple[bytes, int]:
    """Content and end index of ``stream``, worked out line by line."""
    lines = []
    pos = 0
    while True:
        lf = stream.find(b"\r\n", pos)
        line = stream[pos : lf + 2]
        if line == b".\r\n":
            return b"".join(lines), lf + 2
        lines.append(line[1:] if line.startswith(b".") else line)
        pos = lf + 2


# Periods placed around a read's edges: as the first and last bytes, in the
# four bytes held back, in stuffed lines and within lines.
STREAMS = {
    "no period": BLOCK + BLOCK + b".\r\n",
    "period inside a line": BLOCK + b"x.y\r\n" + BLOCK + b".\r\n",
    "stuffed first line": b"..first\r\n" + BLOCK + b".\r\n",
    "stuffed line after a read": BLOCK + b"..dot\r\n" + BLOCK + b".\r\n",
    "stuffed lines everywhere": (LINE + b"..x\r\n") * 2000 + b".\r\n",
    "end right after a read": BLOCK + b".\r\nQUIT\r\n",
    "bare LF dots only": BLOCK + b"a\n.\nb\r\n" + BLOCK + b".\r\n",
}


@pytest.mark.parametrize("name", sorted(STREAMS))
@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4, 5, 7, 65536])
def test_big_reads_decode_as_bytewise(name: str, cut: int) -> None:
    stream = STREAMS[name]
    content, end = expected(stream)
    # Cut the stream into reads of len(BLOCK) shifted by ``cut`` bytes.
    size = len(BLOCK)
    bounds = [0, *range(cut or size, len(stream), size), len(stream)]
    reads = [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]
    assert decode(reads) == (content, end, None)


@pytest.mark.parametrize("at", [0, 1, 2, 3, 4, 5])
def test_a_period_at_each_edge_of_a_read(at: int) -> None:
    # The read ends with ``at`` bytes of "CRLF..x": the marker and the stuffed
    # dot may straddle two reads.
    tail = b"\r\n..x\r\n"
    first = BLOCK[:-2] + tail[:at]
    second = tail[at:] + BLOCK + b".\r\n"
    content, end = expected(first + second)
    assert decode([first, second]) == (content, end, None)
    assert content.count(b"\r\n.x\r\n") == 1


def test_a_long_line_without_a_period_is_still_too_long() -> None:
    stream = BLOCK + b"B" * 5000 + b"\r\n" + BLOCK + b".\r\n"
    content, end, error = decode([stream[i : i + 65536] for i in range(0, len(stream), 65536)])
    assert (content, end, error) == (b"", len(stream), LINE_TOO_LONG)
