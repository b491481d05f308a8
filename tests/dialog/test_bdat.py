"""BDAT framing as dialogs (fake transport, virtual clock) and the chunk decoder as tables.

Whatever way TCP cuts a valid BDAT byte stream (commands and chunks), the
server must deliver the same messages and write the same replies; and the
decoder must stop exactly at the chunk's end.
"""

from __future__ import annotations

import pytest
from conftest import Recorder
from hypothesis import given, settings
from hypothesis import strategies as st

from dialog.harness import Dialog
from dialog.scripts import HOSTNAME, TIMEOUT_REPLY, server
from smtpkit._bdat import ChunkDecoder, parse_bdat


def bdat(data: bytes, *, last: bool = False) -> bytes:
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def stream_of(messages: list[list[bytes]]) -> bytes:
    """EHLO, then each message as MAIL, RCPT and its chunks (the last one sent with LAST)."""
    out = b"EHLO client.test\r\n"
    for chunks in messages:
        out += b"MAIL FROM:<anne@example.com>\r\nRCPT TO:<bart@example.com>\r\n"
        for index, chunk in enumerate(chunks):
            out += bdat(chunk, last=index == len(chunks) - 1)
    return out + b"NOOP\r\n"


def play(data: bytes, cuts: list[int], **smtp: object) -> tuple[list[str], list[bytes | str]]:
    """Send ``data`` cut at ``cuts``; the replies, and the delivered messages' content."""
    recorder = Recorder()
    with Dialog(server(recorder, chunking=True, **smtp)) as talk:
        talk.replies()  # the greeting
        replies: list[str] = []
        start = 0
        for cut in [*sorted(set(cuts)), len(data)]:
            if cut > start:
                replies += talk.send(data[start:cut])
                start = cut
    contents = [e.content for e in recorder.envelopes if e.content is not None]
    return replies, contents


_octets = st.binary(max_size=40) | st.sampled_from(
    [b"", b"\r\n.\r\n", b"BDAT 3 LAST\r\n", b"QUIT\r\n", b"..\r\n", b"\r", b"\n"]
)
_messages = st.lists(st.lists(_octets, min_size=1, max_size=4), min_size=1, max_size=3)


@settings(max_examples=150, deadline=None)
@given(messages=_messages, data=st.data())
def test_any_split_gives_the_same_messages_and_replies(
    messages: list[list[bytes]], data: st.DataObject
) -> None:
    stream = stream_of(messages)
    whole = play(stream, [])
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    assert play(stream, cuts) == whole
    replies, contents = whole
    assert contents == [b"".join(chunks) for chunks in messages]
    assert replies[-1] == "250 OK"  # the NOOP: the server kept in step
    expected_count = 7 + sum(2 + len(chunks) for chunks in messages) + 1
    assert len(replies) == expected_count  # EHLO's 7 lines, then one reply per command


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(0, 80), min_size=1, max_size=4), data=st.data())
def test_any_split_gives_the_same_size_refusals(sizes: list[int], data: st.DataObject) -> None:
    messages = [[b"z" * size for size in sizes]]
    stream = stream_of(messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
    whole = play(stream, [], data_size_limit=100)
    assert play(stream, cuts, data_size_limit=100) == whole
    replies, contents = whole
    if sum(sizes) > 100:
        assert contents == []
        assert any(line.startswith("552 ") for line in replies)
    else:
        assert contents == [b"z" * sum(sizes)]


def test_idle_timeout_in_a_chunk_on_the_virtual_clock() -> None:
    with Dialog(server(chunking=True, timeout=60, data_min_rate=0)) as talk:
        talk.replies()
        talk.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        assert talk.send(b"BDAT 10 LAST\r\nabc") == []
        assert talk.advance(59) == []
        assert talk.advance(2) == [TIMEOUT_REPLY]


def test_rate_limit_in_a_chunk_on_the_virtual_clock() -> None:
    with Dialog(server(chunking=True, data_min_rate=1000, data_rate_window=10)) as talk:
        talk.replies()
        talk.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n")
        talk.send(b"BDAT 100000 LAST\r\n")
        found: list[str] = []
        for _ in range(30):
            found += talk.send(b"x" * 10)
            found += talk.advance(1)
            if found:
                break
        assert found == [f"421 4.4.2 {HOSTNAME} Error: data transfer too slow"]


@pytest.mark.parametrize(
    ("arg", "parsed"),
    [
        ("0 LAST", (0, True)),
        ("10", (10, False)),
        ("10 last", (10, True)),
        ("10  LAST", (10, True)),
        ("10000000000 LAST", (10_000_000_000, True)),
        ("10 FINAL", 10),
        ("ten", None),
        ("", None),
        (None, None),
        ("-1", None),
        ("LAST", None),
        ("1 LAST extra", 1),
    ],
)
def test_parse_bdat(arg: str | None, parsed: object) -> None:
    assert parse_bdat(arg) == parsed


def test_decoder_stops_at_the_chunk_end() -> None:
    decoder = ChunkDecoder(5)
    assert decoder.feed(b"ab") == -1
    assert decoder.feed(b"cdeNOOP\r\n") == 3
    assert decoder.done and decoder.take() == b"abcde" and decoder.size == 5
    with pytest.raises(RuntimeError, match="after the end of the chunk"):
        decoder.feed(b"x")


def test_decoder_over_the_limit_keeps_nothing() -> None:
    decoder = ChunkDecoder(10_000_000_000, size_before=10, size_limit=100)
    assert decoder.error == "552 Error: Too much mail data"
    assert decoder.feed(b"x" * 65536) == -1
    assert decoder.pending == 0 and decoder.chunks == []
    assert decoder.size == 10 + 65536


def test_zero_chunk_is_done_at_once() -> None:
    assert ChunkDecoder(0).done
