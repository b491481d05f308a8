"""Postfix relaying a DSN request into smtpkit: the values arrive decoded on the envelope.

A throw-away Postfix (``tests/interop/postfix.py``) relays to a smtpkit
server that offers DSN. ``sendmail -N`` sets NOTIFY, ``-V`` the ENVID (which
Postfix sends as xtext), and Postfix adds an ORCPT of its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from smtpkit.dsn import RcptDSN
from smtpkit.smtp import Envelope

from . import HOST, Recorder, ServerThread, serving, wait_for
from . import postfix as postfix_peer
from .bdat_dialogs import ehlo_keywords
from .conftest import peer_unavailable
from .postfix import Postfix

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def smtpkit() -> Iterator[tuple[ServerThread, Recorder]]:
    recorder = Recorder()
    with serving(recorder, dsn=True) as server:
        yield server, recorder


@pytest.fixture(scope="module")
def relay(smtpkit: tuple[ServerThread, Recorder]) -> Iterator[Postfix]:
    reason = postfix_peer.unavailable()
    if reason is not None:
        peer_unavailable(reason)
    instance = Postfix(postfix_peer.relaying(smtpkit[0].port))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


def delivered(recorder: Recorder, subject: str) -> Envelope:
    """The envelope of the message with ``subject``, waiting for it."""

    def find() -> Envelope | None:
        for _, envelope in list(recorder.messages):
            if f"Subject: {subject}".encode() in (envelope.original_content or b""):
                return envelope
        return None

    wait_for(lambda: find() is not None, f"the message {subject!r} in smtpkit", limit=30)
    found = find()
    assert found is not None
    return found


def message(subject: str) -> bytes:
    return f"From: sender@client.test\nSubject: {subject}\n\nHello.\n".encode()


def test_smtpkit_offers_dsn(smtpkit: tuple[ServerThread, Recorder]) -> None:
    assert "DSN" in ehlo_keywords(HOST, smtpkit[0].port)


def test_notify_envid_and_orcpt_arrive_decoded(
    relay: Postfix, smtpkit: tuple[ServerThread, Recorder]
) -> None:
    # "+" and "=" must travel as xtext (+2B, +3D) and come back as themselves.
    relay.sendmail(
        "sender@client.test",
        ["rcpt@remote.test", "other@remote.test"],
        message("dsn decoded"),
        notify="success,failure",
        envid="batch+7=x",
    )
    envelope = delivered(smtpkit[1], "dsn decoded")
    assert envelope.dsn is not None
    assert envelope.dsn.envid == "batch+7=x"
    assert envelope.dsn.ret is None  # sendmail was not given -R
    # The upper-cased option keeps the wire form, not the decoded value.
    assert "ENVID=BATCH+2B7+3DX" in envelope.mail_options
    assert sorted(envelope.rcpt_tos) == ["other@remote.test", "rcpt@remote.test"]
    assert len(envelope.rcpt_dsn) == len(envelope.rcpt_tos)
    for address, dsn in zip(envelope.rcpt_tos, envelope.rcpt_dsn, strict=True):
        assert dsn.notify == frozenset({"SUCCESS", "FAILURE"})
        assert dsn.orcpt == ("rfc822", address)


def test_never_arrives_alone(relay: Postfix, smtpkit: tuple[ServerThread, Recorder]) -> None:
    relay.sendmail("sender@client.test", ["rcpt@remote.test"], message("dsn never"), notify="never")
    envelope = delivered(smtpkit[1], "dsn never")
    assert envelope.dsn is None  # no ENVID, no RET
    [dsn] = envelope.rcpt_dsn
    assert isinstance(dsn, RcptDSN)
    assert dsn.notify == frozenset({"NEVER"})
