"""Recipient patterns: tables of (pattern, captures, address, expected match)."""

from __future__ import annotations

import pytest

from smtpkit.routing import RecipientPattern

MATCHES = [
    # Literal text, domain case-insensitive, local part exact.
    ("postmaster@example.com", {}, "postmaster@example.com", {}),
    ("postmaster@example.com", {}, "postmaster@EXAMPLE.com", {}),
    ("postmaster@example.com", {}, "Postmaster@example.com", None),
    ("postmaster@example.com", {}, "postmaster@example.org", None),
    ("postmaster@example.com", {}, "xpostmaster@example.com", None),
    ("postmaster@example.com", {}, "postmaster@example.com.evil", None),
    # Dots in literal text are literal.
    ("a.b@example.com", {}, "axb@example.com", None),
    ("a.b@example.com", {}, "a.b@exampleXcom", None),
    # Captures with their regex.
    ("(user)@example.com", {"user": "[a-z.]+"}, "anne.person@example.com", {"user": "anne.person"}),
    ("(user)@example.com", {"user": "[a-z.]+"}, "Anne@example.com", None),
    ("(user)@example.com", {"user": "(?i:[a-z]+)"}, "Anne@example.com", {"user": "Anne"}),
    ("(user)+(tag)@example.com", {}, "anne+lists@example.com", {"user": "anne", "tag": "lists"}),
    # The default capture regex: anything without '@'.
    ("(user)@example.com", {}, "a+b.c@example.com", {"user": "a+b.c"}),
    ("(user)@example.com", {}, "@example.com", None),
    # Captures in the domain, matched case-insensitively.
    ("(user)@(domain)", {}, "anne@Example.COM", {"user": "anne", "domain": "Example.COM"}),
    (
        "support@(tenant).example.com",
        {"tenant": "[a-z]+"},
        "support@ACME.example.com",
        {"tenant": "ACME"},
    ),
    # No '@': local parts at any domain.
    ("postmaster", {}, "postmaster@example.com", {}),
    ("postmaster", {}, "postmaster@example.org", {}),
    ("postmaster", {}, "postmaster", None),
    ("(user)", {"user": "[0-9]+"}, "42@example.com", {"user": "42"}),
    # Alternation inside a capture stays inside it.
    ("(box)@example.com", {"box": "sales|support"}, "sales@example.com", {"box": "sales"}),
    ("(box)@example.com", {"box": "sales|support"}, "sales@example.org", None),
]


@pytest.mark.parametrize(("text", "captures", "address", "expected"), MATCHES)
def test_match(
    text: str, captures: dict[str, str], address: str, expected: dict[str, str] | None
) -> None:
    assert RecipientPattern.parse(text, captures).match(address) == expected


def test_domain_is_added_to_local_patterns() -> None:
    pattern = RecipientPattern.parse("(user)", {"user": "[a-z]+"}, domain="example.org")
    assert pattern.text == "(user)@example.org"
    assert pattern.names == ("user",)
    assert pattern.match("anne@EXAMPLE.org") == {"user": "anne"}
    assert pattern.match("anne@example.com") is None


ERRORS = [
    ("(user@example.com", {}, "stray '('"),
    ("user)@example.com", {}, "stray ')'"),
    ("(1user)@example.com", {}, "stray '('"),
    ("(user)+(user)@example.com", {}, "capture (user) appears 2 times"),
    ("(user)@example.com", {"usr": "[a-z]+"}, "capture 'usr', which the pattern does not have"),
    ("(user)@example.com", {"user": "[a-z"}, "capture 'user' = '[a-z' is not a valid regex"),
    ("(a)(b)@example.com", {"a": "(?P<b>x)"}, "do not combine"),
]


@pytest.mark.parametrize(("text", "captures", "message"), ERRORS)
def test_invalid_patterns(text: str, captures: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="route pattern") as error:
        RecipientPattern.parse(text, captures)
    assert message in str(error.value)
    assert repr(text) in str(error.value)


def test_domain_option_refuses_patterns_with_a_domain() -> None:
    with pytest.raises(ValueError, match=r"already names a domain.*domain='example.org'"):
        RecipientPattern.parse("anne@example.com", domain="example.org")


def test_capture_regex_must_be_text() -> None:
    with pytest.raises(TypeError, match="capture 'user' = 5; expected a regex string"):
        RecipientPattern.parse("(user)@example.com", {"user": 5})  # type: ignore[dict-item]
