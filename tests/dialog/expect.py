"""Expected reply lines for dialog tests: exact texts or patterns, and the check.

See :mod:`dialog.harness` for how dialogs use them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["Expected", "check_replies", "code", "prefix", "split_lines"]

#: One expected reply line: the exact text, or a pattern the whole line matches.
Expected = str | re.Pattern[str]


def prefix(text: str) -> re.Pattern[str]:
    """A pattern for a reply line that starts with ``text`` (``prefix("220 ")``)."""
    return re.compile(re.escape(text) + ".*", re.DOTALL)


def code(number: int | str) -> re.Pattern[str]:
    """A pattern for any reply line with the code ``number``, last line or not."""
    return re.compile(rf"{number}[ -].*|{number}", re.DOTALL)


def split_lines(data: bytes) -> list[str]:
    """Reply lines of ``data``; each must end with CRLF and hold no other CR or LF."""
    if not data:
        return []
    if not data.endswith(b"\r\n"):
        raise AssertionError(f"server output does not end with CRLF: {data[-200:]!r}")
    lines = data[:-2].split(b"\r\n")
    for line in lines:
        if b"\r" in line or b"\n" in line:
            raise AssertionError(f"bare CR or LF in the reply line {line!r}")
    return [line.decode("utf-8", "replace") for line in lines]


def _matches(expected: Expected, line: str) -> bool:
    if isinstance(expected, str):
        return expected == line
    return expected.fullmatch(line) is not None


def _show(expected: Expected) -> str:
    return repr(expected) if isinstance(expected, str) else f"/{expected.pattern}/"


def check_replies(got: Sequence[str], expected: Sequence[Expected], what: str) -> None:
    """Fail, showing both lists, unless ``got`` matches ``expected`` line by line.

    Raises:
        AssertionError: naming the step ``what``, the lines expected and got.
    """
    if len(got) == len(expected) and all(map(_matches, expected, got)):
        return
    shown = ", ".join(map(_show, expected))
    raise AssertionError(f"after {what}:\n  expected [{shown}]\n  got      {list(got)!r}")
