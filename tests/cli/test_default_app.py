"""``smtpkit run`` with no TARGET: any mail, stored in a Maildir, one line per message."""

from __future__ import annotations

import datetime
import os
import re
import smtplib
import subprocess
from pathlib import Path

from .conftest import Start
from .helpers import HOST, LISTENING, READY, clean_env, maildir_messages, send, smtpkit

#: One time format for the log and the line: ISO 8601, milliseconds, UTC offset.
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
LINE = re.compile(
    rf"^(?P<time>{TIME}) from=<(?P<from>[^>]*)> to=(?P<to>\S+) "
    r"size=(?P<size>\d+) file=(?P<file>\S+) subject=(?P<subject>.+)$"
)
LOG_LINE = re.compile(rf"^(?P<time>{TIME}) \[\d+\] INFO smtpkit\.cli: ")


def test_stores_a_message_and_prints_its_line(start: Start, tmp_path: Path) -> None:
    command = start("run", "--port", "0")
    port = command.port()
    send(port, subject="Quarterly report", recipients=("bob@example.com", "carol@example.com"))

    line = command.wait_for(LINE, "stdout")
    assert line["from"] == "alice@example.com"
    assert line["to"] == "<bob@example.com>,<carol@example.com>"
    assert line["subject"] == '"Quarterly report"'
    assert (tmp_path / "smtpkit-mail" / "new" / line["file"]).is_file()
    (stored,) = maildir_messages(tmp_path / "smtpkit-mail")
    assert b"X-MailFrom: alice@example.com\n" in stored
    assert b"Subject: Quarterly report\n" in stored
    assert stored.endswith(b"\nHi Bob.\n")
    # The size is that of the message as received (CRLF line endings).
    received = stored.split(b"X-RcptTo: bob@example.com, carol@example.com\n", 1)[1]
    assert int(line["size"]) == len(received.replace(b"\n", b"\r\n"))
    assert list((tmp_path / "smtpkit-mail" / "tmp").iterdir()) == []


def test_one_line_per_message_with_encoded_subject_and_none(start: Start, tmp_path: Path) -> None:
    maildir = tmp_path / "inbox"
    command = start("run", "--port", "0", "--maildir", str(maildir))
    port = command.port()
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.sendmail(
            "a@example.com", ["b@example.com"], "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\nx\r\n"
        )
        client.sendmail("<>", ["b@example.com"], "No-Subject: here\r\n\r\ny\r\n")
        raw = "Subject: Grüße\r\n aus Köln\r\n\r\nz\r\n".encode()
        client.sendmail("a@example.com", ["b@example.com"], raw)
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: bad \xff\xfe\r\n\r\nz\r\n")

    first, second, third, fourth = (
        command.wait_for(LINE, "stdout", start=index) for index in range(4)
    )
    assert first["subject"] == '"Grüße"'
    assert second["subject"] == "-"
    assert second["from"] == ""
    assert third["subject"] == '"Grüße aus Köln"'
    assert fourth["subject"] == '"bad \ufffd\ufffd"'
    files = {line["file"] for line in (first, second, third, fourth)}
    assert files == {path.name for path in (maildir / "new").iterdir()}
    assert not (tmp_path / "smtpkit-mail").exists()


def test_log_and_line_share_one_time_format(start: Start) -> None:
    command = start("run", "--port", "0")
    port = command.port()
    send(port)
    logged = command.wait_for(LOG_LINE)
    line = command.wait_for(LINE, "stdout")
    for found in (logged, line):
        moment = datetime.datetime.fromisoformat(found["time"])
        assert moment.utcoffset() is not None
        now = datetime.datetime.now(datetime.timezone.utc)
        assert abs((now - moment).total_seconds()) < READY


def test_start_up_says_where_and_what(start: Start, tmp_path: Path) -> None:
    command = start("run", "--port", "0")
    command.port()
    serving = command.wait_for(r"serving the embedded default, storing every message in (\S+)")
    assert serving.group(1) == str(tmp_path / "smtpkit-mail")
    extensions = command.wait_for(r"extensions: (.*)").group(1)
    assert extensions.split(", ") == [
        "SIZE 33554432",
        "8BITMIME",
        "DSN",
        "PIPELINING",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "BINARYMIME",
        "LIMITS RCPTMAX=1000",
    ]


def test_default_address_is_loopback_8025(start: Start) -> None:
    # The README's first command: nothing but "run". Only checks the address it
    # announces (another test may hold 8025, so a bind failure is accepted too).
    command = start("run")
    found = command.wait_for(r"listening on (\S+)|cannot listen on (.*)")
    assert found.group(1) == "127.0.0.1:8025" or "listen.port = 8025" in (found.group(2) or "")


def test_a_broken_stdout_does_not_fail_the_delivery(tmp_path: Path) -> None:
    # The line is printed after the message is stored: if printing fails, the client
    # must still get its 250, or it would send the message again.
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = subprocess.Popen(
        smtpkit("run", "--port", "0"),
        cwd=tmp_path,
        env=clean_env(),
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(write_end)
    assert process.stderr is not None
    try:
        port = next(int(m.group(1)) for m in map(LISTENING.search, process.stderr) if m)
        send(port)
        warning = next(line for line in process.stderr if "could not print" in line)
        assert (
            "WARNING smtpkit.default_app: could not print the line of a stored message" in warning
        )
        assert len(maildir_messages(tmp_path / "smtpkit-mail")) == 1
    finally:
        process.terminate()
        process.communicate(timeout=READY)
