"""The range rules of the server's settings, shared by ``ServerConfig`` and ``SMTP(...)``.

One rule per kind of value: :class:`smtpkit.config.ServerConfig` checks its
fields with them, and the settings built for ``SMTP(...)`` keywords
(:mod:`smtpkit._settings`) check the same values with the same rules, so a
value is refused or accepted the same way whichever way it comes in. Each
rule's ``expected`` text is what both error messages say.

Types are checked before a rule runs (msgspec for the config, the settings
builder for keywords), so a rule only compares numbers. Imports nothing of
smtpkit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = [
    "AT_LEAST_ONE",
    "CALL_LIMIT",
    "CALL_LIMIT_TABLE",
    "MECHANISM_NAMES",
    "NOT_NEGATIVE",
    "OPTIONAL_SECONDS",
    "RECIPIENTS",
    "SECONDS",
    "Rule",
]


class Rule(NamedTuple):
    """A check on one value and what it expects, in words."""

    #: Completes "expected ...": ``"an integer >= 1"``.
    expected: str
    ok: Callable[[Any], bool]


NOT_NEGATIVE = Rule("an integer >= 0 (0 = no limit)", lambda value: value >= 0)
AT_LEAST_ONE = Rule("an integer >= 1", lambda value: value >= 1)
RECIPIENTS = Rule(
    "an integer >= 100 (RFC 5321 4.5.3.1.8 requires room for 100 recipients)",
    lambda value: value >= 100,
)
SECONDS = Rule("a number of seconds > 0", lambda value: value > 0)
OPTIONAL_SECONDS = Rule("seconds > 0, or None (off)", lambda value: value is None or value > 0)
#: ``command_call_limit`` as one number for every verb.
CALL_LIMIT = AT_LEAST_ONE


def _call_table_ok(table: Mapping[str, int]) -> bool:
    return all(key and value >= 1 for key, value in table.items())


#: ``command_call_limit`` as a table by verb.
CALL_LIMIT_TABLE = Rule("verbs (or '*') mapped to integers >= 1", _call_table_ok)
MECHANISM_NAMES = Rule("mechanism names (not empty strings)", lambda names: all(names))
