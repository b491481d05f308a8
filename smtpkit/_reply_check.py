"""Checks on the replies that user code (hooks, routes, handlers) returns.

A reply string goes to the client as it is, so a malformed one breaks the
dialog: a missing code leaves the client unable to parse it, a stray CR or LF
lets user data inject extra lines (a second reply, or something the client
takes for one), and a ``250-`` continuation without a last line leaves the
client waiting forever. RFC 5321 §4.2 gives the shape every line must have::

    Reply-line     = *( Reply-code "-" [ textstring ] CRLF )
                     Reply-code [ SP textstring ] CRLF
    Reply-code     = %x32-35 %x30-35 %x30-39

(the code's second digit is checked as 0-9: a hook may use codes of its own.)
A multi-line reply is accepted as a list of lines or as one string of lines
joined by CRLF; every line carries the same code, ``-`` after the code on all
lines but the last.

With ENHANCEDSTATUSCODES on (RFC 2034), :func:`enhanced_lines` also checks the
RFC 3463 code after the reply code, when there is one: its class is the reply
code's first digit (``250 5.1.1`` is refused); a line without one gets the
default for its code.

This module is I/O-free.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._replies import looks_enhanced, with_enhanced

__all__ = ["ReplyError", "enhanced_lines", "reply_lines"]

# One line without its CRLF: a code from 200 to 599, then a separator and
# text, or nothing. CR and LF may not appear inside a line.
_LINE = re.compile(r"[2-5][0-9][0-9](?:([ -])[^\r\n]*)?")
_CODES = frozenset(str(code) for code in range(200, 600))


class ReplyError(ValueError):
    """A reply from user code that cannot be sent; the message says why."""


def reply_lines(status: object) -> list[str | bytes]:
    """The lines of a reply returned by user code, checked.

    Args:
        status: a reply string (or bytes), possibly several lines joined
            by CRLF, or a list or tuple of reply lines.

    Returns:
        The lines to send, without CRLF (one item for a one-line reply).

    Raises:
        ReplyError: ``status`` is not a well-formed reply.
    """
    if _is_one_line(status):
        return [status]  # type: ignore[list-item]
    if isinstance(status, str):
        lines: Sequence[str | bytes] = status.split("\r\n") if "\n" in status else (status,)
    elif isinstance(status, bytes):
        lines = status.split(b"\r\n") if b"\n" in status else (status,)
    elif isinstance(status, (list, tuple)) and status:
        lines = status
    else:
        raise ReplyError("expected a reply string or a non-empty list of reply lines")
    checked = [_check_line(line) for line in lines]
    _check_multiline(checked)
    return list(lines)


def _is_one_line(status: object) -> bool:
    """The common case, a well-formed one-line str reply, checked quickly."""
    return (
        type(status) is str
        and status[:3] in _CODES
        and status[3:4] in ("", " ")
        and "\n" not in status
        and "\r" not in status
    )


def _check_line(line: object) -> str:
    """One line as text; raise ReplyError when it is not a reply line."""
    if isinstance(line, bytes):
        text = line.decode("utf-8", "surrogateescape")
    elif isinstance(line, str):
        text = line
    else:
        raise ReplyError(f"reply line {line!r} is not a string")
    if _LINE.fullmatch(text) is None:
        if "\r" in text or "\n" in text:
            raise ReplyError("a CR or LF inside a reply line (reply injection)")
        raise ReplyError(f"reply line {text[:40]!r} does not start with a code 200-599")
    return text


def _check_multiline(lines: list[str]) -> None:
    code = lines[0][:3]
    for text in lines[:-1]:
        if text[:3] != code:
            raise ReplyError(f"the lines of one reply have different codes ({code}, {text[:3]})")
        if text[3:4] != "-":
            raise ReplyError(
                f"reply line {text[:40]!r} is followed by more lines but lacks '-' "
                "(a CR LF inside a one-line reply is reply injection)"
            )
    last = lines[-1]
    if last[:3] != code:
        raise ReplyError(f"the lines of one reply have different codes ({code}, {last[:3]})")
    if last[3:4] == "-":
        raise ReplyError(f"the last reply line {last[:40]!r} says more lines follow ('-')")


def enhanced_lines(lines: list[str | bytes]) -> list[str | bytes]:
    """Checked reply lines (see :func:`reply_lines`) with an enhanced code each.

    Args:
        lines: the lines :func:`reply_lines` returned.

    Returns:
        The lines, each 2xx/4xx/5xx one with an RFC 3463 code after the
        reply code (the default for the code where the line had none).

    Raises:
        ReplyError: a line's enhanced code has another class than its code.
    """
    for line in lines:
        text = line.decode("utf-8", "surrogateescape") if isinstance(line, bytes) else line
        word = text[4:].partition(" ")[0]
        if looks_enhanced(word) and word[0] != text[0]:
            raise ReplyError(
                f"enhanced status code {word} does not match reply code {text[:3]} "
                f"(expected {text[0]}.x.x)"
            )
    return [with_enhanced(line) for line in lines]
