"""smtpkit against Postfix's load generator, ``smtp-source``, in SMTP and LMTP.

``smtp-source`` (``/usr/sbin/smtp-source``, Debian package ``postfix``) runs
parallel sessions and does not pipeline. In LMTP mode (``-L``) it reads one
reply per recipient after DATA, and gives up on any other count, so a server
that answers LMTP like SMTP fails these tests.

Without smtp-source the tests are skipped, unless the ``CI`` environment
variable is set: there a missing program is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import HOST, Recorder

from smtpkit.lmtp import LMTP
from smtpkit.smtp import SMTP

SMTP_SOURCE = shutil.which("smtp-source") or (
    "/usr/sbin/smtp-source" if os.access("/usr/sbin/smtp-source", os.X_OK) else None
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        SMTP_SOURCE is None and not os.environ.get("CI"),
        reason="smtp-source is not installed (apt-get install postfix)",
    ),
]


def smtp_source(*args: str) -> subprocess.CompletedProcess[str]:
    """Run smtp-source; fail the test with its output when it fails."""
    if SMTP_SOURCE is None:
        pytest.fail("smtp-source is not installed, and CI is set")
    command = [SMTP_SOURCE, "-M", "client.test", "-f", "sender@client.test", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
    return done


@pytest.fixture
def unix_socket_dir() -> Iterator[Path]:
    # Short: a Unix socket path must fit in 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="smtpkit-src-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_parallel_sessions_over_one_connection_each(server: Any) -> None:
    handler = Recorder()
    running = server(handler)
    smtp_source("-s", "5", "-m", "50", "-l", "1024", "-d", f"{HOST}:{running.port}")
    assert len(handler.envelopes) == 50
    assert {envelope.mail_from for envelope in handler.envelopes} == {"sender@client.test"}
    bodies = {envelope.content.split(b"\r\n\r\n", 1)[1] for envelope in handler.envelopes}
    # -l 1024: about 1 KiB of text in lines under 80 bytes, the same in every message.
    assert len(bodies) == 1
    body = bodies.pop()
    assert 1024 <= len(body) < 1100 and body.endswith(b"\r\n")
    # Five sessions, each reusing its connection (-d) for ten messages.
    assert len({id(session) for session in handler.sessions}) == 5


def test_a_new_connection_per_message(server: Any) -> None:
    handler = Recorder()
    running = server(handler)
    smtp_source("-s", "4", "-m", "20", "-r", "3", f"{HOST}:{running.port}")
    assert len(handler.envelopes) == 20
    assert all(len(envelope.rcpt_tos) == 3 for envelope in handler.envelopes)
    assert len({id(session) for session in handler.sessions}) == 20


def test_lmtp_over_tcp_with_several_recipients(server: Any) -> None:
    handler = Recorder()
    running = server(handler, cls=LMTP)
    smtp_source("-L", "-s", "3", "-m", "30", "-r", "4", "-d", f"{HOST}:{running.port}")
    assert len(handler.envelopes) == 30
    assert all(len(envelope.rcpt_tos) == 4 for envelope in handler.envelopes)


def test_lmtp_over_a_unix_socket(server: Any, unix_socket_dir: Path) -> None:
    handler = Recorder()
    running = server(handler, cls=LMTP)  # for its event loop
    path = str(unix_socket_dir / "lmtp.sock")

    async def listen() -> asyncio.AbstractServer:
        return await running.loop.create_unix_server(
            lambda: LMTP(handler, hostname="lmtp.example.test"), path
        )

    async def close(unix: asyncio.AbstractServer) -> None:
        unix.close()

    unix = running.call(listen())
    try:
        smtp_source("-L", "-s", "2", "-m", "10", "-r", "2", "-d", f"unix:{path}")
    finally:
        running.call(close(unix))
    assert len(handler.envelopes) == 10
    assert all(len(envelope.rcpt_tos) == 2 for envelope in handler.envelopes)


def test_plain_smtp_answer_confuses_an_lmtp_client(server: Any) -> None:
    # The other side of the coin: one reply after DATA (SMTP) is not enough for
    # an LMTP client with two recipients, which is what the LMTP class fixes.
    class Answering(SMTP):
        async def smtp_LHLO(self, arg: str | None) -> None:
            await self.smtp_EHLO(arg)

    running = server(Recorder(), cls=Answering)
    if SMTP_SOURCE is None:
        pytest.fail("smtp-source is not installed, and CI is set")
    command = [SMTP_SOURCE, "-L", "-m", "2", "-r", "2", "-d", f"{HOST}:{running.port}"]
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(command, capture_output=True, timeout=1.5)
