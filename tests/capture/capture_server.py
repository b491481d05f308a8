"""``smtpkit run --http`` as a subprocess, and messages to send it.

Shared by the API tests here and the browser tests in tests/browser.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

HOST = "127.0.0.1"
#: Seconds a server gets to start, or to stop (a loaded 2-core machine is slow).
PATIENCE = 60.0
_SMTP = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
_HTTP = re.compile(r"capture UI on (http://\S+/)")


@dataclass
class Capture:
    """A running ``smtpkit run --http``: its SMTP port, its URL, its Maildir."""

    process: subprocess.Popen[str]
    maildir: Path
    lines: list[str] = field(default_factory=list)
    smtp_port: int = 0
    url: str = ""

    def output(self) -> str:
        """What it printed on stderr so far."""
        return "".join(self.lines)

    def send(self, message: EmailMessage, rcpt_tos: Sequence[str] = ("bob@example.com",)) -> None:
        """Send ``message`` with smtplib, from alice@example.com."""
        with smtplib.SMTP(HOST, self.smtp_port, timeout=30) as client:
            client.send_message(message, "alice@example.com", list(rcpt_tos))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SMTPKIT_")}


def start(
    tmp: Path, *flags: str, http: str | None = f"{HOST}:0", env: dict[str, str] | None = None
) -> Capture:
    """Start the embedded default (with ``--http`` unless None) and wait until it listens."""
    maildir = tmp / "mail"
    command = [sys.executable, "-m", "smtpkit", "run", "--port=0", f"--maildir={maildir}"]
    command += [*([f"--http={http}"] if http else []), *flags]
    process = subprocess.Popen(
        command,
        cwd=tmp,
        env={**_clean_env(), **(env or {})},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    capture = Capture(process, maildir)
    threading.Thread(target=_follow, args=(capture,), daemon=True).start()
    deadline = time.monotonic() + PATIENCE
    while not (capture.smtp_port and (capture.url or not http)):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(capture)
            raise AssertionError(f"the server did not start:\n{capture.output()}")
        time.sleep(0.02)
    return capture


def _follow(capture: Capture) -> None:
    assert capture.process.stderr is not None
    for line in capture.process.stderr:
        capture.lines.append(line)
        if match := _SMTP.search(line):
            capture.smtp_port = int(match[1])
        if match := _HTTP.search(line):
            capture.url = match[1]


def stop(capture: Capture) -> int:
    """Stop it with SIGINT (then SIGKILL if it hangs); return its exit status."""
    if capture.process.poll() is None:
        capture.process.send_signal(signal.SIGINT)
    try:
        return capture.process.wait(PATIENCE)
    except subprocess.TimeoutExpired:
        capture.process.kill()
        return capture.process.wait(PATIENCE)


@contextmanager
def running(
    tmp: Path, *flags: str, http: str | None = f"{HOST}:0", env: dict[str, str] | None = None
) -> Iterator[Capture]:
    """:func:`start` and :func:`stop` around a block."""
    capture = start(tmp, *flags, http=http, env=env)
    try:
        yield capture
    finally:
        stop(capture)


def message(
    subject: str = "Hello",
    text: str = "Plain text body.",
    html: str | None = None,
    attachment: tuple[str, bytes] | None = None,
    to: str = "Bob <bob@example.com>",
) -> EmailMessage:
    """A message with a text body and, when given, an HTML body and one attachment."""
    mail = EmailMessage()
    mail["From"] = "Alice <alice@example.com>"
    mail["To"] = to
    mail["Subject"] = subject
    mail.set_content(text)
    if html is not None:
        mail.add_alternative(html, subtype="html")
    if attachment is not None:
        name, data = attachment
        mail.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return mail


def wait_until(condition: object, what: str, timeout: float = PATIENCE) -> None:
    """Poll ``condition()`` until it is true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
