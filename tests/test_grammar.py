"""The command-line grammar (smtpkit._grammar): paths, keywords and ESMTP parameters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smtpkit._grammar import (
    MALFORMED,
    PATH_TOO_LONG,
    GrammarError,
    parse_params,
    parse_path,
    strip_keyword,
)

# -- Paths -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "address", "rest"),
    [
        ("<anne@example.com>", "anne@example.com", ""),
        ("anne@example.com", "anne@example.com", ""),
        ("  <anne@example.com>  ", "anne@example.com", ""),
        ("<anne@example.com> SIZE=10", "anne@example.com", "SIZE=10"),
        (
            "<anne@example.com>  BODY=8BITMIME  SMTPUTF8",
            "anne@example.com",
            "BODY=8BITMIME  SMTPUTF8",
        ),
        ("anne@example.com SIZE=10", "anne@example.com", "SIZE=10"),
        ("", "", ""),
        ("   ", "", ""),
        # The null reverse-path.
        ("<>", "<>", ""),
        ("<> SIZE=10", "<>", "SIZE=10"),
        # Quoted local parts keep their quotes.
        ('<"anne person"@example.com>', '"anne person"@example.com', ""),
        ('<"anne\\"quote"@example.com>', '"anne\\"quote"@example.com', ""),
        ('<"a@b"@example.com>', '"a@b"@example.com', ""),
        # Atoms may hold any of RFC 5321's atext.
        ("<a.b+c!#$%&'*/=?^_`{|}~-d@example.com>", "a.b+c!#$%&'*/=?^_`{|}~-d@example.com", ""),
        # Source routes are parsed and dropped (RFC 5321 appendix C).
        ("<@relay.example:anne@example.com>", "anne@example.com", ""),
        ("<@one.example,@two.example:anne@example.com>", "anne@example.com", ""),
        # Address literals.
        ("<anne@[192.0.2.1]>", "anne@[192.0.2.1]", ""),
        ("<anne@[IPv6:2001:db8::1]>", "anne@[IPv6:2001:db8::1]", ""),
        # A mailbox without a domain (postmaster).
        ("<postmaster>", "postmaster", ""),
        # UTF-8 (RFC 6531) in the local part and the domain.
        ("<jörg@exämple.com>", "jörg@exämple.com", ""),
        ("<用户@例子.广告>", "用户@例子.广告", ""),
        ("<a@sub-domain.example.com>", "a@sub-domain.example.com", ""),
    ],
)
def test_parse_path(text: str, address: str, rest: str) -> None:
    assert parse_path(text) == (address, rest)


@pytest.mark.parametrize(
    "text",
    [
        "<anne@example.com",
        "anne@example.com>",
        "<anne@example.com>>",
        "<anne person@example.com>",
        "<@example.com>",
        "<anne@>",
        "<anne@-example.com>",
        "<anne@example-.com>",
        "<anne@example..com>",
        "<anne@example.com.>",
        "<anne..person@example.com>",
        "<.anne@example.com>",
        "<anne.@example.com>",
        "<anne@example.com>SIZE=10",
        '<"unterminated@example.com>',
        "<anne@[]>",
        "<anne@[a]b]>",
        "<@relay.example anne@example.com>",
        "<anne@exa mple.com>",
        "<<anne@example.com>>",
        "<anne@example.com@example.org>",
    ],
)
def test_malformed_path(text: str) -> None:
    with pytest.raises(GrammarError) as raised:
        parse_path(text)
    assert raised.value.reply == MALFORMED == "553 5.1.3 Error: malformed address"


def test_null_path_only_where_allowed() -> None:
    assert parse_path("<>", allow_null=True) == ("<>", "")
    with pytest.raises(GrammarError) as raised:
        parse_path("<>", allow_null=False)
    assert raised.value.reply == MALFORMED


def test_grammar_error_is_a_value_error_carrying_the_reply() -> None:
    error = GrammarError("501 x")
    assert isinstance(error, ValueError)
    assert error.reply == "501 x"
    assert str(error) == "501 x"


# -- Lengths (RFC 5321 §4.5.3.1) ---------------------------------------------


def _domain(octets: int) -> str:
    """A valid domain of exactly ``octets`` octets, in labels of up to 63."""
    labels = []
    left = octets
    while left > 0:
        size = min(63, left if left <= 63 else left - 2)
        labels.append("d" * size)
        left -= size + 1
    domain = ".".join(labels)
    assert len(domain) == octets, (len(domain), octets)
    return domain


@pytest.mark.parametrize(
    ("local", "domain_octets", "fits"),
    [
        # The path with its angle brackets may be 256 octets.
        ("a" * 64, 189, True),
        ("a" * 64, 190, False),
        ("a", 252, True),
        ("a", 253, False),
    ],
)
def test_path_length(local: str, domain_octets: int, fits: bool) -> None:
    text = f"<{local}@{_domain(domain_octets)}>"
    assert (len(text) <= 256) is fits
    if fits:
        assert parse_path(text)[0] == text[1:-1]
    else:
        with pytest.raises(GrammarError) as raised:
            parse_path(text)
        assert raised.value.reply == PATH_TOO_LONG == "501 5.1.3 Path too long"


def test_path_length_counts_utf8_octets() -> None:
    # 127 characters, 254 octets: with "@x.de" and brackets, over 256 octets.
    local = "ö" * 127
    assert len(f"<{local}@x.de>") < 256
    with pytest.raises(GrammarError) as raised:
        parse_path(f"<{local}@x.de>")
    assert raised.value.reply == PATH_TOO_LONG
    assert parse_path(f"<{'ö' * 100}@x.de>")[0] == f"{'ö' * 100}@x.de"


def test_domain_too_long() -> None:
    # A bare mailbox has no brackets, so the domain check itself is reached.
    with pytest.raises(GrammarError) as raised:
        parse_path(f"a@{_domain(256)}")
    assert raised.value.reply == PATH_TOO_LONG


@pytest.mark.parametrize(
    ("local", "limit", "fits"),
    [
        ("a" * 64, 64, True),
        ("a" * 65, 64, False),
        ("a" * 200, 0, True),
        ("ö" * 32, 64, True),
        ("ö" * 33, 64, False),
        ('"' + "a" * 62 + '"', 64, True),
        ('"' + "a" * 63 + '"', 64, False),
    ],
)
def test_local_part_limit(local: str, limit: int, fits: bool) -> None:
    text = f"<{local}@example.com>"
    if fits:
        assert parse_path(text, local_part_limit=limit)[0] == f"{local}@example.com"
    else:
        with pytest.raises(GrammarError) as raised:
            parse_path(text, local_part_limit=limit)
        assert raised.value.reply == MALFORMED


# -- Keywords and parameters ---------------------------------------------------


@pytest.mark.parametrize(
    ("keyword", "arg", "expected"),
    [
        ("FROM:", "FROM:<a@example.com>", "<a@example.com>"),
        ("FROM:", "from:<a@example.com>", "<a@example.com>"),
        ("FROM:", "From: <a@example.com> SIZE=1", "<a@example.com> SIZE=1"),
        ("FROM:", "FROM:", ""),
        ("FROM:", "FROM <a@example.com>", None),
        ("FROM:", "TO:<a@example.com>", None),
        ("FROM:", "", None),
        ("TO:", "to:<b@example.com>", "<b@example.com>"),
        ("TO:", "TOO:<b@example.com>", None),
    ],
)
def test_strip_keyword(keyword: str, arg: str, expected: str | None) -> None:
    assert strip_keyword(keyword, arg) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ([], {}),
        (["SIZE=10"], {"SIZE": "10"}),
        (["SMTPUTF8"], {"SMTPUTF8": True}),
        (
            ["BODY=8BITMIME", "SIZE=0", "SMTPUTF8"],
            {"BODY": "8BITMIME", "SIZE": "0", "SMTPUTF8": True},
        ),
        (["X-CUSTOM=a+b/c"], {"X-CUSTOM": "a+b/c"}),
        (["ENVID=QQ314159"], {"ENVID": "QQ314159"}),
        (["XTEXT=café"], {"XTEXT": "café"}),
        (["9LIVES=yes"], {"9LIVES": "yes"}),
        # A later parameter with the same keyword wins.
        (["SIZE=1", "SIZE=2"], {"SIZE": "2"}),
        # Not keyword[=value]:
        (["=10"], None),
        (["-SIZE=10"], None),
        (["SIZE="], None),
        (["SIZE=1=2"], None),
        (["SI ZE=1"], None),
        (["SIZE=1\x7f"], None),
        (["SMTPUTF8", "B@D"], None),
        (["KEY_WORD=1"], None),
    ],
)
def test_parse_params(params: list[str], expected: dict[str, str | bool] | None) -> None:
    assert parse_params(params) == expected


# -- Properties ----------------------------------------------------------------

_PIECES = st.sampled_from([*'<>@.,:"\\[]= a-\x00\x7fö', "anne", "@example.com", '\\"'])


@given(st.lists(_PIECES, max_size=60).map("".join), st.integers(0, 70), st.booleans())
@settings(max_examples=500, deadline=None)
def test_any_text_parses_or_raises_grammar_error(text: str, limit: int, null: bool) -> None:
    try:
        address, rest = parse_path(text, local_part_limit=limit, allow_null=null)
    except GrammarError as error:
        assert error.reply in (MALFORMED, PATH_TOO_LONG)
        return
    if address:
        # What parsed must parse again, to the same address.
        assert (
            parse_path(f"<{address}>" if address != "<>" else address, allow_null=null)[0]
            == address
        )
    assert rest == rest.strip()
    result = parse_params(rest.split())
    assert result is None or isinstance(result, dict)
