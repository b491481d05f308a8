"""The DATA decoder (smtpkit._data): tables, split points and properties.

The decoder is fed the bytes that follow ``354``. It must end the message at
``<CRLF>.<CRLF>`` and nowhere else, remove the dot that the client put in
front of lines starting with a dot, enforce the size and line limits, and
give the same answer however the bytes are split into segments.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from smtpkit._data import LINE_TOO_LONG, TOO_MUCH_DATA, DataDecoder


def decode(
    segments: list[bytes], size_limit: int | None = None, line_limit: int | None = 1001
) -> tuple[bytes, int, str | None]:
    """Feed ``segments`` in order; return (content, end index in the whole stream, error).

    The end index is -1 when the end of data was never seen. Segments after
    the end of data are not fed.
    """
    decoder = DataDecoder(size_limit, line_limit)
    content = []
    offset = 0
    end = -1
    for segment in segments:
        found = decoder.feed(segment)
        content.append(decoder.take())
        if found >= 0:
            assert decoder.done
            end = offset + found
            break
        assert not decoder.done
        offset += len(segment)
    if decoder.error is not None:
        # Content taken before a limit was found to be exceeded is void.
        return b"", end, decoder.error
    return b"".join(content), end, decoder.error


def stuff(content: bytes) -> bytes:
    """What a client sends for ``content``: dot-stuffed, then ``.CRLF``.

    ``content`` must be empty or end with CRLF.
    """
    stuffed = (b"\r\n" + content).replace(b"\r\n.", b"\r\n..")[2:]
    return stuffed + b".\r\n"


def reference(
    stream: bytes, size_limit: int | None, line_limit: int | None
) -> tuple[bytes, int, str | None]:
    """A plain, slow model of the decoder, to compare it with."""
    work = b"\r\n" + stream
    marker = work.find(b"\r\n.\r\n")
    if marker < 0:
        sent, end = stream, -1
    else:
        sent, end = work[2 : marker + 2], marker + 3
    # Each limit is exceeded at a byte position; the first one wins.
    failures: list[tuple[int, str]] = []
    if size_limit and len(sent) > size_limit:
        failures.append((size_limit, TOO_MUCH_DATA))
    if line_limit:
        start = 0
        for piece in sent.split(b"\n"):
            if len(piece) + 1 > line_limit and start + line_limit < len(sent):
                failures.append((start + line_limit, LINE_TOO_LONG))
                break
            start += len(piece) + 1
    if failures:
        return b"", end, min(failures)[1]
    content = (b"\r\n" + sent).replace(b"\r\n.", b"\r\n")[2:]
    return content, end, None


# -- Tables --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "content"),
    [
        # The empty message.
        (b".\r\n", b""),
        # One empty line.
        (b"\r\n.\r\n", b"\r\n"),
        (b"hello\r\n.\r\n", b"hello\r\n"),
        # Stuffed dots on the first line and on later lines.
        (b"..x\r\n.\r\n", b".x\r\n"),
        (b"a\r\n..b\r\n.\r\n", b"a\r\n.b\r\n"),
        (b"..\r\n.\r\n", b".\r\n"),
        (b"...\r\n.\r\n", b"..\r\n"),
        (b"a\r\n..\r\n..\r\n.\r\n", b"a\r\n.\r\n.\r\n"),
        # A line that starts with an unstuffed dot loses it all the same.
        (b"a.b\r\n.c\r\n.\r\n", b"a.b\r\nc\r\n"),
        # Bare LF and bare CR never end the data (smuggling).
        (b"a\n.\nb\r\n.\r\n", b"a\n.\nb\r\n"),
        (b"a\r.\rb\r\n.\r\n", b"a\r.\rb\r\n"),
        (b"a\r\n.\nb\r\n.\r\n", b"a\r\n\nb\r\n"),
        (b"a\n.\r\nb\r\n.\r\n", b"a\n.\r\nb\r\n"),
        (b"a\r\n.\rb\r\n.\r\n", b"a\r\n\rb\r\n"),
        (b"a\r\n\x00.\r\nb\r\n.\r\n", b"a\r\n\x00.\r\nb\r\n"),
        (b"a\r\n.\x00\r\nb\r\n.\r\n", b"a\r\n\x00\r\nb\r\n"),
        # A bare CR just before the end belongs to the content.
        (b"a\r\r\n.\r\n", b"a\r\r\n"),
    ],
)
@pytest.mark.parametrize("after", [b"", b"QUIT\r\n", b".\r\n"])
def test_decode_whole(stream: bytes, content: bytes, after: bytes) -> None:
    assert decode([stream + after]) == (content, len(stream), None)


@pytest.mark.parametrize(
    "stream",
    [
        b"hello\r\n.\r\n",
        b"..x\r\n..\r\n.\r\n",
        b"a\r\n.\r\nb",
        b".\r\n",
        b"\r\n.\r\n",
        b"a\r\r\n.\r\n",
        b"a\n.\nb\r.\rc\r\n.\r\n",
    ],
)
def test_every_split_point(stream: bytes) -> None:
    whole = decode([stream])
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == whole, cut
    for first in range(len(stream)):
        for second in range(first, len(stream)):
            segments = [stream[:first], stream[first:second], stream[second:]]
            assert decode(segments) == whole, (first, second)


def test_byte_by_byte() -> None:
    stream = b"line one\r\n..dot\r\n\r\n.x\r\n.\r\nNOOP\r\n"
    bytewise = decode([stream[i : i + 1] for i in range(len(stream))])
    assert bytewise == (b"line one\r\n.dot\r\n\r\nx\r\n", 26, None)


def test_not_finished() -> None:
    decoder = DataDecoder()
    assert decoder.feed(b"hello\r\n.") == -1
    assert not decoder.done
    assert decoder.feed(b"\r") == -1
    assert decoder.feed(b"\n") == 1
    assert decoder.done
    assert decoder.take() == b"hello\r\n"


def test_feed_after_end_raises() -> None:
    decoder = DataDecoder()
    decoder.feed(b".\r\n")
    with pytest.raises(RuntimeError, match="after the end of data"):
        decoder.feed(b"more")


def test_accepts_bytearray_and_memoryview() -> None:
    decoder = DataDecoder()
    assert decoder.feed(bytearray(b"a\r\n")) == -1
    assert decoder.feed(memoryview(b"..b\r\n.\r\n")) == 8
    assert decoder.take() == b"a\r\n.b\r\n"


def test_size_counts_bytes_as_sent() -> None:
    decoder = DataDecoder()
    decoder.feed(b"..ab\r\n.\r\n")
    assert decoder.size == 6
    assert decoder.take() == b".ab\r\n"


# -- Limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "size_limit", "error"),
    [
        (b"01234567\r\n.\r\n", 10, None),
        (b"012345678\r\n.\r\n", 10, TOO_MUCH_DATA),
        (b".\r\n", 1, None),
        # Stuffed dots count: the limit is on what the client sent.
        (b"..234567\r\n.\r\n", 10, None),
        (b"...34567\r\n.\r\n", 9, TOO_MUCH_DATA),
        (b"x" * 100 + b"\r\n.\r\n", 0, None),
        (b"x" * 100 + b"\r\n.\r\n", None, None),
    ],
)
def test_size_limit(stream: bytes, size_limit: int | None, error: str | None) -> None:
    content, end, found = decode([stream], size_limit=size_limit)
    assert (found, end) == (error, len(stream))
    if error is not None:
        assert content == b""


@pytest.mark.parametrize(
    ("stream", "line_limit", "error"),
    [
        (b"x" * 999 + b"\r\n.\r\n", 1001, None),
        (b"x" * 1000 + b"\r\n.\r\n", 1001, LINE_TOO_LONG),
        (b"ok\r\n" + b"x" * 1000 + b"\r\nok\r\n.\r\n", 1001, LINE_TOO_LONG),
        (b"ok\r\n" + b"x" * 999 + b"\r\nok\r\n.\r\n", 1001, None),
        (b"abc\r\n.\r\n", 5, None),
        (b"abcd\r\n.\r\n", 5, LINE_TOO_LONG),
        # Bare CR does not end a line.
        (b"ab\rcd\r\n.\r\n", 5, LINE_TOO_LONG),
        (b"x" * 5000 + b"\r\n.\r\n", 0, None),
        (b"x" * 5000 + b"\r\n.\r\n", None, None),
    ],
)
def test_line_limit(stream: bytes, line_limit: int | None, error: str | None) -> None:
    whole = decode([stream], line_limit=line_limit)
    assert whole[1:] == (len(stream), error)
    if error is not None:
        assert whole[0] == b""
    for cut in range(0, len(stream), 7):
        assert decode([stream[:cut], stream[cut:]], line_limit=line_limit) == whole, cut


def test_limit_drops_content_and_keeps_scanning() -> None:
    decoder = DataDecoder(size_limit=10)
    assert decoder.feed(b"0123456789" * 3) == -1
    assert decoder.error == TOO_MUCH_DATA
    assert decoder.chunks == []
    assert not decoder.done
    # The rest is scanned for the end only: a bare-LF dot does not end it.
    assert decoder.feed(b"\n.\nmore\r\n.\r\nNOOP") == 12
    assert decoder.done
    assert decoder.take() == b""


def test_long_line_across_many_segments() -> None:
    decoder = DataDecoder(line_limit=100)
    for _ in range(20):
        assert decoder.feed(b"y" * 10) == -1
    assert decoder.error == LINE_TOO_LONG
    assert decoder.feed(b"\r\n.\r\n") == 5


# -- Properties ----------------------------------------------------------------

# Bytes that make the interesting cases likely.
_ALPHABET = st.sampled_from([b"\r", b"\n", b".", b"a", b"\x00", b"\r\n", b"\r\n.", b"\xff"])
_STREAMS = st.lists(_ALPHABET, max_size=60).map(b"".join)


@st.composite
def _splits(draw: st.DrawFn, data: bytes) -> list[bytes]:
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@given(st.data(), _STREAMS, st.sampled_from([None, 5, 17, 40]), st.sampled_from([None, 3, 8, 30]))
@settings(max_examples=400, deadline=None)
@example(data=None, stream=b"aaaaaaa\r\n.\r\n", size_limit=5, line_limit=3)  # both limits exceeded
def test_any_split_gives_the_same_result(
    data: st.DataObject | None,
    stream: bytes,
    size_limit: int | None,
    line_limit: int | None,
) -> None:
    stream = stream + b"\r\n.\r\nafter"
    expected = reference(stream, size_limit, line_limit)
    assert decode([stream], size_limit, line_limit) == expected
    if data is not None:
        segments = data.draw(_splits(stream))
        assert decode(segments, size_limit, line_limit) == expected
    bytewise = [stream[i : i + 1] for i in range(len(stream))]
    assert decode(bytewise, size_limit, line_limit) == expected


@given(st.lists(st.binary(max_size=40), max_size=10), st.sampled_from([None, 4, 50]))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_never_raise(segments: list[bytes], limit: int | None) -> None:
    decoder = DataDecoder(size_limit=limit, line_limit=limit)
    for segment in segments:
        end = decoder.feed(segment)
        assert decoder.error in (None, TOO_MUCH_DATA, LINE_TOO_LONG)
        if end >= 0:
            assert 0 <= end <= len(segment)
            assert decoder.done
            break
        assert not decoder.done
    if decoder.error is not None:
        assert decoder.chunks == []


@given(st.binary(max_size=200), st.data())
@settings(max_examples=300, deadline=None)
def test_stuffed_content_decodes_back(body: bytes, data: st.DataObject) -> None:
    content = body if body.endswith(b"\r\n") or not body else body + b"\r\n"
    stream = stuff(content) + b"MAIL FROM:<a@example.com>\r\n"
    end = len(stuff(content))
    assert decode([stream], line_limit=None) == (content, end, None)
    segments = data.draw(_splits(stream))
    assert decode(segments, line_limit=None) == (content, end, None)


@given(st.lists(st.binary(max_size=30).filter(lambda b: b"\n" not in b), max_size=20))
@settings(max_examples=200, deadline=None)
def test_stuffed_lines_decode_back(lines: list[bytes]) -> None:
    content = b"".join(line + b"\r\n" for line in lines)
    content_end = len(stuff(content))
    assert decode([stuff(content)], line_limit=None) == (content, content_end, None)
