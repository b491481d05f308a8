"""Recipient patterns: ``"(user)@example.com"`` with a regex per named capture.

A pattern is literal text with named captures in parentheses. Each capture
matches the regex given for it (``[^@]+`` when none is given); everything
else must appear as written. The domain part matches case-insensitively
(RFC 5321 §2.4: domain names are case-insensitive); the local part matches
exactly as written, since only the receiving mail store may decide that
``Bob`` and ``bob`` are one mailbox (a capture regex can say so with
``(?i:…)``).

A pattern without ``@`` describes local parts only and matches them at any
domain; a blueprint registered with ``domain=`` fixes the domain of such
patterns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_CAPTURE", "RecipientPattern"]

#: The regex of a capture that was not given one: any text without ``@``.
DEFAULT_CAPTURE = "[^@]+"

# A capture is an identifier in parentheses; any other parenthesis is an error.
_CAPTURE = re.compile(r"\(([A-Za-z_][A-Za-z0-9_]*)\)")
_ANY_DOMAIN = "[^@]+"


@dataclass(frozen=True)
class RecipientPattern:
    """A compiled recipient pattern.

    Attributes:
        text: the pattern as written (with the domain added by a blueprint).
        names: the capture names, in order of appearance.
        regex: the compiled regex, matched against the whole address.
        key: equal for two patterns that match the same addresses as written: the
            regex without the capture names, the domain's literal text in lower case.
    """

    text: str
    names: tuple[str, ...]
    regex: re.Pattern[str]
    key: str = field(default="", compare=False, repr=False)

    @classmethod
    def parse(
        cls, text: str, captures: Mapping[str, str] | None = None, *, domain: str | None = None
    ) -> RecipientPattern:
        """Compile a pattern.

        Args:
            text: the pattern, such as ``"(user)@example.com"`` or ``"postmaster"``.
            captures: the regex of each capture, by name.
            domain: the domain to add to a pattern without ``@`` (a blueprint's
                ``domain=`` option); it may hold captures too.

        Returns:
            The compiled pattern.

        Raises:
            ValueError: a stray parenthesis, a capture named twice, a regex
                given for a name the pattern does not have, an invalid regex,
                or ``domain`` given for a pattern that already has one.
        """
        captures = dict(captures or {})
        if domain is not None:
            if "@" in text:
                raise ValueError(
                    f"route pattern {text!r} already names a domain, so it cannot be "
                    f"registered with domain={domain!r}; write the pattern without '@…'"
                )
            text = f"{text}@{domain}"
        local, at, domain_part = _split(text)
        names = _names(text)
        _check_captures(text, names, captures)
        source = _part_regex(local, captures)
        source += "@(?i:" + _part_regex(domain_part, captures) + ")" if at else "@" + _ANY_DOMAIN
        try:
            regex = re.compile(source)
        except re.error as exc:
            raise ValueError(
                f"route pattern {text!r}: the capture regexes do not combine ({exc})"
            ) from None
        key = _part_regex(local, captures, named=False) + "@"
        key += _part_regex(domain_part, captures, named=False, fold=True) if at else _ANY_DOMAIN
        return cls(text=text, names=names, regex=regex, key=key)

    def match(self, address: str) -> dict[str, str] | None:
        """Match a whole address.

        Args:
            address: a recipient address, without angle brackets.

        Returns:
            The captured text by capture name, or None when it does not match.
        """
        found = self.regex.fullmatch(address)
        return None if found is None else found.groupdict()

    def __str__(self) -> str:
        return self.text


def _split(text: str) -> tuple[str, str, str]:
    """Split at the last ``@`` outside the captures: ``(local, "@", domain)``."""
    masked = _CAPTURE.sub(lambda found: "_" * len(found.group(0)), text)
    for char in "()":
        if char in masked:
            raise ValueError(
                f"route pattern {text!r}: stray {char!r} at position {masked.index(char)}; "
                "captures are written as (name), a Python identifier in parentheses"
            )
    at = masked.rfind("@")
    if at < 0:
        return text, "", ""
    return text[:at], "@", text[at + 1 :]


def _names(text: str) -> tuple[str, ...]:
    names = tuple(found.group(1) for found in _CAPTURE.finditer(text))
    for name in names:
        if names.count(name) > 1:
            raise ValueError(
                f"route pattern {text!r}: capture ({name}) appears {names.count(name)} times; "
                "expected each capture name once"
            )
    return names


def _check_captures(text: str, names: tuple[str, ...], captures: Mapping[str, str]) -> None:
    for name, regex in captures.items():
        if name not in names:
            known = ", ".join(names) or "none"
            raise ValueError(
                f"route pattern {text!r}: a regex was given for capture {name!r}, which the "
                f"pattern does not have (its captures: {known})"
            )
        if not isinstance(regex, str):
            raise TypeError(
                f"route pattern {text!r}: capture {name!r} = {regex!r}; expected a regex string"
            )
        try:
            re.compile(regex)
        except re.error as exc:
            raise ValueError(
                f"route pattern {text!r}: capture {name!r} = {regex!r} is not a valid regex ({exc})"
            ) from None


def _part_regex(
    part: str, captures: Mapping[str, str], *, named: bool = True, fold: bool = False
) -> str:
    """The regex of one side of the ``@``: literal text escaped, captures grouped.

    ``named=False`` leaves the capture names out and ``fold=True`` lowers the literal
    text (for a domain, matched without regard to case): the form compared by ``key``.
    """
    pieces: list[str] = []
    position = 0
    for found in _CAPTURE.finditer(part):
        pieces.append(_literal(part[position : found.start()], fold))
        name = found.group(1)
        group = f"(?P<{name}>" if named else "("
        pieces.append(f"{group}{captures.get(name, DEFAULT_CAPTURE)})")
        position = found.end()
    pieces.append(_literal(part[position:], fold))
    return "".join(pieces)


def _literal(text: str, fold: bool) -> str:
    return re.escape(text.lower() if fold else text)
