"""Output nobody reads: mail keeps flowing, lost lines are counted and reported.

``smtpkit run --log-level debug`` with its stdout and stderr connected to pipes that
nobody reads (a stuck supervisor, ``| less`` left open): 3,000 messages must still
get their 250s, every one on disk; once the pipes are read again, the line per
message that did not fit in the queue is counted in the log, and the server stops
cleanly. The writer itself is checked on a real pipe as well.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import smtplib
import subprocess
import threading
import time
from pathlib import Path

from cli.helpers import EXIT, clean_env, free_port, smtpkit

from smtpkit._output import QUEUE_LINES, IsoFormatter, LineWriter, QueueLogHandler

from .conftest import HOST, READY, Start, make_message, stored_by_id

MESSAGES = 3000
SENDERS = 3
LINE = re.compile(r"^\S+ from=<sender@example\.com> to=<rcpt@example\.com> size=\d+ file=\S+ ")
DROPPED = re.compile(
    r"WARNING smtpkit\.default_app: (\d+) lines? of stored messages dropped: "
    r"standard output was not being read"
)


def wait_until_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with smtplib.SMTP(HOST, port, timeout=READY):
                return
        except ConnectionRefusedError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port} after {READY:.0f} s")


def send_many(port: int, first: int, count: int, accepted: list[str]) -> None:
    """One session sending ``count`` messages; the ids that got a 250 go to ``accepted``."""
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        for number in range(first, first + count):
            message = make_message(f"out-{number}@test", 200)
            client.sendmail("sender@example.com", ["rcpt@example.com"], message.data)
            accepted.append(message.message_id)


class Drain:
    """Reads a pipe to the end in a thread, keeping the lines."""

    def __init__(self, fd: int) -> None:
        self.lines: list[str] = []
        self._file = os.fdopen(fd, "rb")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for raw in self._file:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def join(self) -> list[str]:
        self._thread.join(EXIT)
        assert not self._thread.is_alive(), "the pipe was not closed"
        return self.lines


def test_mail_flows_while_nobody_reads_stdout_or_stderr(tmp_path: Path) -> None:
    port = free_port()
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    command = smtpkit("run", "--port", str(port), "--maildir", "mail", "--log-level", "debug")
    process = subprocess.Popen(
        command, cwd=tmp_path, env=clean_env(), stdout=out_write, stderr=err_write
    )
    os.close(out_write)
    os.close(err_write)
    try:
        wait_until_listening(port, process)
        accepted: list[str] = []
        per_sender = MESSAGES // SENDERS
        senders = [
            threading.Thread(target=send_many, args=(port, n * per_sender, per_sender, accepted))
            for n in range(SENDERS)
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(READY * 2)
        assert len(accepted) == MESSAGES, "a sender stalled or failed"
        assert len(stored_by_id(tmp_path / "mail")) == MESSAGES

        # Reading again: the writers catch up and report what they dropped.
        out, err = Drain(out_read), Drain(err_read)
        process.send_signal(signal.SIGTERM)
        assert process.wait(EXIT) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(EXIT)
    printed = [line for line in out.join() if LINE.match(line)]
    logged = err.join()
    dropped = sum(int(found.group(1)) for found in map(DROPPED.search, logged) if found)
    assert dropped > 0, "\n".join(logged)
    assert len(printed) + dropped == MESSAGES
    assert len(printed) > QUEUE_LINES  # the queue was written out, not thrown away
    assert any(line.endswith("INFO smtpkit.cli: stopped") for line in logged)


def test_the_writer_drops_and_counts_instead_of_waiting() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    writer = LineWriter(lambda: stream, "test pipe", capacity=50)
    line = "x" * 199
    started = time.monotonic()
    # Far more than the pipe (64 KiB) and the queue hold: the writer thread blocks,
    # write() must not.
    taken = [writer.write(line) for _ in range(2000)]
    assert time.monotonic() - started < READY
    assert taken.count(False) == writer.dropped > 0

    reader = Drain(read_end)
    assert writer.close(READY)
    stream.close()
    lines = reader.join()
    # A report follows each write that succeeded after lines were dropped.
    report = re.compile(r"^smtpkit: (\d+) lines? dropped: test pipe was not being read$")
    reports = [int(found.group(1)) for found in map(report.match, lines) if found]
    assert sum(reports) == writer.dropped
    assert [text for text in lines if not report.match(text)] == [line] * taken.count(True)
    assert writer.write(line) is False  # closed


def test_the_log_handler_reports_its_losses_in_the_log_format() -> None:
    read_end, write_end = os.pipe()
    stream = os.fdopen(write_end, "w", encoding="utf-8")
    handler: QueueLogHandler

    def report(count: int) -> str:
        return handler.dropped_report(count)

    handler = QueueLogHandler(LineWriter(lambda: stream, "stderr", capacity=10, report=report))
    handler.setFormatter(IsoFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("smtpkit.test_output")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for number in range(3000):
            logger.warning("record %d with some padding to fill the pipe %s", number, "." * 100)
        reader = Drain(read_end)
        assert handler.writer.close(READY)
    finally:
        logger.removeHandler(handler)
    stream.close()
    lines = reader.join()
    report_line = re.compile(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d WARNING smtpkit\.output: "
        r"(\d+) log lines dropped: stderr was not being read$"
    )
    reports = [int(found.group(1)) for found in map(report_line.match, lines) if found]
    assert reports and sum(reports) == handler.writer.dropped
    assert len(lines) - len(reports) + handler.writer.dropped == 3000


def test_every_line_is_written_before_a_normal_exit(run_server: Start) -> None:
    server = run_server()
    with smtplib.SMTP(HOST, server.port, timeout=READY) as client:
        for number in range(300):
            message = make_message(f"exit-{number}@test", 200)
            client.sendmail("sender@example.com", ["rcpt@example.com"], message.data)
    server.command.send_signal(signal.SIGTERM)  # at once: lines may still be queued
    assert server.command.wait() == 0
    printed = [line for line in server.command.lines["stdout"] if LINE.match(line)]
    assert len(printed) == 300
    assert server.command.lines["stderr"][-1].endswith("INFO smtpkit.cli: stopped")
