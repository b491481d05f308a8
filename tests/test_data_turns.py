"""A fast upload waits a turn of the event loop for every 64 KiB it brings in one read.

A read of a busy socket may bring 256 KiB. If the connection read again at once,
every turn of the loop would decode that much for each busy upload, and a short
command on another connection would wait for all of it.
"""

from __future__ import annotations

import pytest
from conftest import Recorder
from dialog.harness import Dialog
from dialog.scripts import IN_DATA, server

from smtpkit.handlers import Sink

LINE = b"x" * 510 + b"\r\n"  # 512 bytes


def paused_turns(talk: Dialog, data: bytes) -> int:
    """Send ``data`` in one read; count the turns of the loop that reading stays paused."""
    turns: list[bool] = []

    def tick() -> None:
        turns.append(talk.transport.reading)
        if len(turns) < 20:
            talk.loop.call_soon(tick)

    talk.transport.feed(data)
    talk.loop.call_soon(tick)
    talk.loop.run_until_idle()
    # The first tick runs in the turn that delivers the read.
    assert turns[0] is False
    return turns.index(True)


@pytest.mark.parametrize(("kib", "turns"), [(16, 0), (64, 1), (127, 1), (128, 2), (256, 4)])
def test_reading_waits_a_turn_per_64_kib(kib: int, turns: int) -> None:
    recorder = Recorder()
    body = LINE * 2 * kib
    with Dialog(server(recorder)) as talk:
        talk.run(IN_DATA)
        if turns:
            assert paused_turns(talk, body) == turns
        else:
            assert talk.send(body) == []
            assert talk.transport.reading
        assert talk.send(b".\r\n") == ["250 OK"]
    assert recorder.envelopes[0].content == body


def test_the_message_after_a_big_read_is_whole_and_the_session_goes_on() -> None:
    body = LINE * 2048
    with Dialog(server(Sink())) as talk:
        talk.run(IN_DATA)
        for start in range(0, len(body), 256 * 1024):
            assert talk.send(body[start : start + 256 * 1024]) == []
        assert talk.send(b".\r\nNOOP\r\n") == ["250 OK", "250 OK"]
