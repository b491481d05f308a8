"""The BDAT reference dialogs against a real Postfix smtpd, and against smtpkit.

``bdat_dialogs.REFERENCE`` holds the reply codes Postfix answers to each
scripted dialog. The first test checks the table against a throw-away
Postfix instance, so the reference stays what Postfix really does. The second
runs the same dialogs against smtpkit once smtpkit offers CHUNKING; where
smtpkit means to differ from Postfix, ``SMTPKIT_DIFFERENCES`` says how and why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import HOST, Recorder, ServerThread, serving
from .bdat_dialogs import (
    DIALOG_BY_NAME,
    DIALOGS,
    REFERENCE,
    SIZE_LIMIT,
    advertises_chunking,
    run_dialog,
)
from .postfix import Postfix

pytestmark = pytest.mark.interop

#: Dialog name -> (smtpkit's codes, why they differ from Postfix's).
SMTPKIT_DIFFERENCES: dict[str, tuple[list[int], str]] = {
    "refused_rcpt_pipelined": (
        [250, 553, 554, 221],
        "The refused RCPT is answered as before BDAT existed: 553 5.1.3 'malformed address',"
        " aiosmtpd's code for an unparsable path, where Postfix says 501. The BDAT after it"
        " gets the same 554 as Postfix's.",
    ),
    "oversize_chunk": (
        [250, 250, 552, 554, 250, 250, 250, 250, 221],
        "A chunk after a refused one gets 554 5.5.0 (transaction failed), not Postfix's 551,"
        " which RFC 5321 §4.2.2 keeps for 'user not local' and a client may take as a"
        " recipient problem. RFC 3030 names no code; any 5xx ends the transaction.",
    ),
    "binarymime_with_data": (
        [250, 250, 503, 221],
        "smtpkit offers BINARYMIME (Postfix does not, hence its 555 to MAIL): the parameter"
        " is accepted, and DATA for a binary body gets 503 5.5.1 as RFC 3030 §3 asks.",
    ),
}

NAMES = [dialog.name for dialog in DIALOGS]


def test_every_dialog_has_a_reference() -> None:
    assert sorted(REFERENCE) == sorted(NAMES)
    assert set(SMTPKIT_DIFFERENCES) <= set(NAMES)


def test_the_reference_server_offers_chunking(postfix_receiver: Postfix) -> None:
    # The same check decides whether smtpkit's dialogs run: it must see Postfix's CHUNKING.
    assert advertises_chunking(HOST, postfix_receiver.port)


@pytest.mark.parametrize("name", NAMES)
def test_postfix_answers_the_reference_codes(postfix_receiver: Postfix, name: str) -> None:
    codes = run_dialog(HOST, postfix_receiver.port, DIALOG_BY_NAME[name])
    assert codes == REFERENCE[name], DIALOG_BY_NAME[name].rfc


@pytest.fixture(scope="module")
def smtpkit_server() -> Iterator[ServerThread]:
    with serving(Recorder(), data_size_limit=SIZE_LIMIT, chunking=True) as server:
        yield server


@pytest.mark.parametrize("name", NAMES)
def test_smtpkit_answers_like_postfix(smtpkit_server: ServerThread, name: str) -> None:
    if not advertises_chunking(HOST, smtpkit_server.port):
        pytest.skip("smtpkit does not offer CHUNKING (BDAT) yet")
    expected, _why = SMTPKIT_DIFFERENCES.get(name, (REFERENCE[name], ""))
    assert run_dialog(HOST, smtpkit_server.port, DIALOG_BY_NAME[name]) == expected
