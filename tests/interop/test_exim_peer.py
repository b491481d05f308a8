"""Exim as a real BDAT-sending client (``hosts_try_chunking = *``).

Exim runs from its unpacked Debian package (``tests/interop/exim.py``,
fetched by ``scripts/fetch-exim.sh``). Against the raw recorder offering
CHUNKING it must send the message as BDAT chunks; against a server that
does not offer CHUNKING it falls back to DATA; into smtpkit the message
arrives with its envelope.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpkit.smtp import SMTP

from . import Recorder, serving, wait_for
from . import exim as exim_peer
from .conftest import peer_unavailable
from .exim import Exim
from .recorder import RecorderServer

pytestmark = pytest.mark.interop

MESSAGE = b"From: sender@exim.test\nTo: rcpt@dest.test\nSubject: from exim\n\nHello.\n.\n..\n"


class EximSetups(list[Exim]):
    """The Exim setups a test made; their logs are shown when it fails."""

    LOG_TITLE = "Exim log"

    def log(self) -> str:
        return "".join(exim.log() for exim in self)


@pytest.fixture
def exim_for() -> Iterator[EximSetups]:
    """Exim setups made by the test (``exim_for.append(Exim(port))``), removed after it."""
    reason = exim_peer.unavailable()
    if reason is not None:
        peer_unavailable(reason)
    made = EximSetups()
    yield made
    for exim in made:
        exim.cleanup()


def test_exim_sends_bdat_to_a_server_offering_chunking(exim_for: EximSetups) -> None:
    with RecorderServer(("PIPELINING", "8BITMIME", "CHUNKING")) as recorder:
        exim = Exim(recorder.port)
        exim_for.append(exim)
        exim.send("sender@exim.test", "rcpt@dest.test", MESSAGE)
        record = recorder.wait_message()
    assert record.used_bdat, record.commands
    assert "DATA" not in record.verbs
    bdats = [line for line in record.commands if line.upper().startswith("BDAT ")]
    assert bdats[-1].upper().endswith(" LAST")
    (body,) = record.messages
    # BDAT carries the message as it is: no dot-stuffing, lines end in CRLF.
    assert b"\r\nSubject: from exim\r\n" in body
    assert body.endswith(b"\r\n\r\nHello.\r\n.\r\n..\r\n")
    assert sum(record.chunks) == len(body)


def test_exim_falls_back_to_data_without_chunking(exim_for: EximSetups) -> None:
    with RecorderServer(("PIPELINING", "8BITMIME")) as recorder:
        exim = Exim(recorder.port)
        exim_for.append(exim)
        exim.send("sender@exim.test", "rcpt@dest.test", MESSAGE)
        record = recorder.wait_message()
    assert not record.used_bdat
    assert "DATA" in record.verbs
    assert record.messages[0].endswith(b"\r\n\r\nHello.\r\n.\r\n..\r\n")


def test_exim_delivers_into_smtpkit(exim_for: EximSetups) -> None:
    recorder = Recorder()
    with serving(recorder) as server:
        exim = Exim(server.port)
        exim_for.append(exim)
        exim.send("sender@exim.test", "rcpt@dest.test", MESSAGE)
        wait_for(lambda: bool(recorder.messages), "Exim's message in smtpkit")
    session, envelope = recorder.messages[0]
    assert envelope.mail_from == "sender@exim.test"
    assert envelope.rcpt_tos == ["rcpt@dest.test"]
    assert session.host_name == "exim.test"
    assert (envelope.original_content or b"").endswith(b"\r\n\r\nHello.\r\n.\r\n..\r\n")


class BdatCounting(SMTP):
    """Keeps the argument of every BDAT command its connections received."""

    bdat_args: list[str | None] = []

    async def smtp_BDAT(self, arg: str | None) -> None:
        self.bdat_args.append(arg)
        await super().smtp_BDAT(arg)


def test_exim_delivers_by_bdat_into_smtpkit(exim_for: EximSetups) -> None:
    recorder = Recorder()
    BdatCounting.bdat_args = []
    with serving(recorder, smtp_class=BdatCounting, chunking=True) as server:
        exim = Exim(server.port)
        exim_for.append(exim)
        exim.send("sender@exim.test", "rcpt@dest.test", MESSAGE)
        wait_for(lambda: bool(recorder.messages), "Exim's BDAT message in smtpkit")
    assert BdatCounting.bdat_args, "Exim did not use BDAT"
    assert (BdatCounting.bdat_args[-1] or "").upper().endswith(" LAST")
    _session, envelope = recorder.messages[0]
    assert envelope.mail_from == "sender@exim.test"
    assert envelope.rcpt_tos == ["rcpt@dest.test"]
    content = envelope.original_content or b""
    # Intact: the lines Exim wrote, CRLF-ended, nothing unstuffed or added at the end.
    assert b"\r\nSubject: from exim\r\n" in content
    assert content.endswith(b"\r\n\r\nHello.\r\n.\r\n..\r\n")
    sizes = [int((arg or "0").split()[0]) for arg in BdatCounting.bdat_args]
    assert sum(sizes) == len(content)
