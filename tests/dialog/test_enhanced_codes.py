"""ENHANCEDSTATUSCODES (RFC 2034, RFC 3463) as dialogs, on the refusal tables.

With ``enhanced_status_codes`` on, every reply line but the greeting and the
replies to HELO/EHLO carries ``class.subject.detail`` after its code, the
class being the code's first digit. The rest of the reply is what the bare
class sends: the same code, the same text.
"""

from __future__ import annotations

import re

import pytest

from dialog.harness import Dialog
from dialog.scripts import GREETING, HOSTNAME, server
from dialog.test_commands import REFUSALS_AFTER_EHLO, REFUSALS_AFTER_HELO

# RFC 3463 §2: class "." subject "." detail; subject and detail 1-3 digits.
ENHANCED = re.compile(r"(?P<code>[245]\d\d)(?P<sep>[ -])(?P<enhanced>[245]\.\d{1,3}\.\d{1,3}) ")
BARE_ENHANCED = re.compile(r"(?P<code>\d{3})(?P<sep>[ -])(?:[245]\.\d{1,3}\.\d{1,3} )?")


def without_enhanced_code(line: str) -> str:
    """``line`` with the enhanced code after its reply code removed, if any."""
    return BARE_ENHANCED.sub(r"\g<code>\g<sep>", line, count=1)


def replies_to(line: bytes, greeting: bytes, **settings: object) -> list[str]:
    with Dialog(server(**settings)) as talk:
        talk.replies()
        talk.send(greeting)
        return talk.send(line)


CASES = [(b"HELO client.test\r\n", line, reply) for line, reply in REFUSALS_AFTER_HELO] + [
    (b"EHLO client.test\r\n", line, reply) for line, reply in REFUSALS_AFTER_EHLO
]


@pytest.mark.parametrize(("greeting", "line", "bare"), CASES, ids=lambda v: repr(v)[:40])
def test_every_refusal_carries_an_enhanced_code(greeting: bytes, line: bytes, bare: str) -> None:
    (reply,) = replies_to(line, greeting, enhanced_status_codes=True)
    match = ENHANCED.match(reply)
    assert match, f"{reply!r} has no enhanced code"
    assert match["enhanced"][0] == match["code"][0], f"{reply!r}: class differs from the code"
    assert without_enhanced_code(reply) == without_enhanced_code(bare)


def test_off_by_default_on_the_bare_class() -> None:
    # The bare class keeps aiosmtpd's texts: the tables elsewhere check them whole.
    assert replies_to(b"XYZZY\r\n", b"HELO client.test\r\n") == [
        '500 Error: command "XYZZY" not recognized'
    ]


def test_ehlo_advertises_it_and_greetings_carry_none() -> None:
    with Dialog(server(enhanced_status_codes=True)) as talk:
        (greeting,) = talk.replies()
        assert GREETING.fullmatch(greeting)
        lines = talk.send(b"EHLO client.test\r\n")
        assert "250-ENHANCEDSTATUSCODES" in lines
        assert lines[0] == f"250-{HOSTNAME}" and lines[-1] == "250 HELP"
        assert talk.send(b"HELO client.test\r\n") == [f"250 {HOSTNAME}"]
        (noop,) = talk.send(b"NOOP\r\n")
        assert ENHANCED.match(noop) and without_enhanced_code(noop) == "250 OK"
