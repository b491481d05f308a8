"""The ``@syntax`` decorator that gives ``smtp_<VERB>`` methods their HELP text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

_F = TypeVar("_F", bound=Callable[..., Any])


def syntax(text: str, extended: str | None = None, when: str | None = None) -> Callable[[_F], _F]:
    """Give an ``smtp_<VERB>`` method its HELP text.

    Args:
        text: the syntax shown by ``HELP <verb>``.
        extended: appended to ``text`` for clients that said EHLO.
        when: the name of an attribute of the server; when it is falsy, the
            command is left out of HELP.

    Returns:
        A decorator that returns the method unchanged, with the text attached.
    """

    def decorator(func: _F) -> _F:
        func.__smtp_syntax__ = text  # type: ignore[attr-defined]
        func.__smtp_syntax_extended__ = extended  # type: ignore[attr-defined]
        func.__smtp_syntax_when__ = when  # type: ignore[attr-defined]
        return func

    return decorator
