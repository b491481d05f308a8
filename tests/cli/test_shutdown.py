"""SIGTERM/SIGINT: stop accepting, let transfers in flight finish, exit 0; twice: at once."""

from __future__ import annotations

import signal
import smtplib
from pathlib import Path

import pytest

from .conftest import Start
from .helpers import HOST, READY, Command, maildir_messages

FIRST_HALF = b"Subject: in flight\r\n\r\nThe first half,\r\n"
SECOND_HALF = b"and the second half.\r\n"


def open_data(port: int) -> smtplib.SMTP:
    """A client that has started DATA and sent half of a message."""
    client = smtplib.SMTP(HOST, port, timeout=READY)
    client.ehlo()
    client.mail("alice@example.com")
    client.rcpt("bob@example.com")
    client.putcmd("data")
    assert client.getreply()[0] == 354
    client.send(FIRST_HALF)
    return client


def finish_data(client: smtplib.SMTP) -> tuple[int, bytes]:
    client.send(SECOND_HALF + b".\r\n")
    return client.getreply()


def signalled(command: Command, signum: int = signal.SIGTERM, *, start: int = 0) -> None:
    """Send a signal and wait until the server says it got it."""
    command.send_signal(signum)
    command.wait_for(rf"{signal.Signals(signum).name} received", start=start)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_transfer_in_flight_completes_and_the_process_exits_0(
    start: Start, tmp_path: Path, signum: int
) -> None:
    command = start("run", "--port", "0")
    port = command.port()
    idle = smtplib.SMTP(HOST, port, timeout=READY)
    client = open_data(port)

    signalled(command, signum)
    assert finish_data(client) == (250, b"2.0.0 OK")
    # The idle session was told to go; new connections are refused (or, when one slips
    # in before the listener closes, told to go at once).
    assert idle.noop()[0] == 421
    try:
        late = smtplib.SMTP(HOST, port, timeout=READY)
    except OSError:
        pass
    else:
        assert late.noop()[0] == 421
        late.close()
    assert command.wait() == 0

    (stored,) = maildir_messages(tmp_path / "smtpkit-mail")
    assert stored.endswith(b"The first half,\nand the second half.\n")
    assert 'subject="in flight"' in command.lines["stdout"][0]
    client.close()
    idle.close()


def test_a_second_signal_exits_at_once(start: Start, tmp_path: Path) -> None:
    command = start("run", "--port", "0")
    client = open_data(command.port())
    signalled(command)
    mark = command.count()
    command.send_signal(signal.SIGTERM)
    assert command.wait() == 128 + signal.SIGTERM
    command.wait_for("SIGTERM received again: exiting at once", start=mark)
    assert maildir_messages(tmp_path / "smtpkit-mail") == []
    client.close()


def test_sessions_still_open_after_the_graceful_timeout_are_cut(start: Start) -> None:
    command = start("run", "--port", "0", "--graceful-timeout", "1")
    client = open_data(command.port())
    signalled(command)
    assert command.wait() == 0
    command.wait_for(r"aborting 1 connection\(s\) still open after the graceful timeout")
    with pytest.raises(smtplib.SMTPServerDisconnected):
        finish_data(client)
    client.close()


def test_the_stop_message_says_what_happens_to_each_session(start: Start) -> None:
    command = start("run", "--port", "0", "--graceful-timeout", "20")
    port = command.port()
    between = smtplib.SMTP(HOST, port, timeout=READY)
    between.ehlo()
    between.mail("alice@example.com")
    between.rcpt("bob@example.com")
    transfer = open_data(port)

    signalled(command)
    line = command.wait_for(r"SIGTERM received: .*")
    assert line.group(0) == (
        "SIGTERM received: no new connections; idle sessions and sessions between commands "
        "get 421 and are closed now; a command in progress (a DATA transfer, a slow hook) "
        "gets up to 20 s to finish (send SIGTERM again to exit at once)"
    )
    # Between RCPT and DATA is between commands: told to go while the transfer still runs.
    code, text = between.getreply()
    assert (code, text[:6], text[-21:]) == (421, b"4.3.2 ", b"Service shutting down")
    assert finish_data(transfer) == (250, b"2.0.0 OK")
    assert command.wait() == 0
    between.close()
    transfer.close()
