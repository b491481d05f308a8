"""Fault injection: what the test server does wrong, and when.

A :class:`Faults` object holds a list of rules. Each rule names a *stage* of
the dialog (``"CONNECT"``, ``"MAIL"``, ``"RCPT"``, ...) and what to do there:
answer with a given reply, drop the connection, wait a while. The server asks
:meth:`Faults.decide` at each stage and gets back a :class:`Decision`.

Rules are counted, not timed: ``nth=2`` means the second time the stage is
reached (across all connections) since the rule was added, so a test gets the
same dialog on every run. Random rules draw from their own seeded generator,
so they are reproducible too.

Rules are added from the test's thread and read from the server's thread:
every access goes through one lock.
"""

from __future__ import annotations

import random as _random
import re
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["STAGES", "Decision", "Faults"]

#: The stages a rule may name, in dialog order. ``HELO`` and ``EHLO`` are the
#: two greetings (LMTP's ``LHLO`` counts as ``EHLO``); ``DATA`` is the reply
#: to the message, after its end; ``DATA_START`` the reply to the command.
STAGES = (
    "CONNECT",
    "HELO",
    "EHLO",
    "STARTTLS",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA_START",
    "DATA",
)
_ALIASES = {"LHLO": "EHLO"}

_REPLY = re.compile(r"[2-5][0-9][0-9]( [^\r\n]*)?")

GREYLIST_REPLY = "451 4.7.1 Greylisted, please try again later"
STARTTLS_REFUSAL = "454 4.7.0 TLS not available due to temporary reason"

Action = Literal["reply", "drop", "delay", "greylist"]


@dataclass(frozen=True)
class Decision:
    """What the server does at one stage.

    Attributes:
        delay: seconds to wait before going on (0 for none).
        reply: the reply to send instead of the normal one, or ``None``.
        drop: close the connection without a reply (after the delay).
    """

    delay: float = 0.0
    reply: str | None = None
    drop: bool = False

    @property
    def normal(self) -> bool:
        """Whether the stage goes on as usual (after the delay, if any)."""
        return self.reply is None and not self.drop


_NORMAL = Decision()


@dataclass
class _Rule:
    stage: str
    action: Action
    reply: str | None = None
    seconds: float = 0.0
    nth: int | None = None
    probability: float | None = None
    rng: _random.Random | None = None
    retry_after: float = 0.0
    seen: int = 0
    greylisted: dict[Hashable, float] = field(default_factory=dict)

    def fires(self, key: Hashable) -> bool:
        """Count one arrival at the stage; say whether this rule acts on it."""
        self.seen += 1
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.rng is not None:
            assert self.probability is not None
            return self.rng.random() < self.probability
        if self.action == "greylist":
            return self._first_attempt(key)
        return True

    def _first_attempt(self, key: Hashable) -> bool:
        now = time.monotonic()
        first = self.greylisted.get(key)
        if first is None:
            self.greylisted[key] = now
            return True
        return now - first < self.retry_after


def check_stage(stage: str) -> str:
    """Return the canonical name of ``stage``, or raise naming the valid ones."""
    if not isinstance(stage, str):
        raise TypeError(f"stage must be a str, one of {', '.join(STAGES)}; got {stage!r}")
    name = _ALIASES.get(stage.upper(), stage.upper())
    if name not in STAGES:
        raise ValueError(f"stage {stage!r} is not known; expected one of {', '.join(STAGES)}")
    return name


def check_reply(reply: str) -> str:
    """Return ``reply`` if it is one SMTP reply line (``"452 4.2.2 Full"``), else raise."""
    if not isinstance(reply, str) or not _REPLY.fullmatch(reply):
        raise ValueError(
            f"reply {reply!r} is not an SMTP reply: expected a code from 200 to 599, "
            'optionally a space and text, on one line (e.g. "452 4.2.2 Mailbox full")'
        )
    return reply


def _check_nth(nth: int | None) -> int | None:
    if nth is not None and (isinstance(nth, bool) or not isinstance(nth, int) or nth < 1):
        raise ValueError(
            f"nth must be a whole number from 1 up, or None for every time; got {nth!r}"
        )
    return nth


def _check_seconds(name: str, seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{name} must be a number of seconds, 0 or more; got {seconds!r}")
    return float(seconds)


class Faults:
    """The faults a test server injects; add rules before or while clients connect.

    Each method returns the :class:`Faults` object, so calls chain.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []

    def _add(self, rule: _Rule) -> Faults:
        with self._lock:
            self._rules.append(rule)
        return self

    def reply(self, stage: str, reply: str, *, nth: int | None = None) -> Faults:
        """Answer ``reply`` at ``stage``: every time, or only the ``nth`` time.

        A ``2xx`` reply accepts (with that text), any other refuses; a ``421``
        reply is followed by closing the connection (RFC 5321 §3.8).

        Args:
            stage: one of :data:`STAGES` (any case).
            reply: one reply line, e.g. ``"452 4.2.2 Mailbox full"``.
            nth: act only on the n-th arrival at the stage (1 for the first),
                counted over all connections since this rule was added.

        Raises:
            ValueError: an unknown stage, a malformed reply or a bad ``nth``.
        """
        return self._add(
            _Rule(check_stage(stage), "reply", reply=check_reply(reply), nth=_check_nth(nth))
        )

    def drop(self, stage: str, *, nth: int | None = None) -> Faults:
        """Close the connection at ``stage`` without a reply (as a crash or network cut would).

        Args:
            stage: one of :data:`STAGES`.
            nth: as in :meth:`reply`.
        """
        return self._add(_Rule(check_stage(stage), "drop", nth=_check_nth(nth)))

    def delay(self, stage: str, seconds: float, *, nth: int | None = None) -> Faults:
        """Wait ``seconds`` at ``stage`` before answering; other rules still apply after.

        Args:
            stage: one of :data:`STAGES`.
            seconds: how long to wait (0 or more).
            nth: as in :meth:`reply`.
        """
        rule = _Rule(check_stage(stage), "delay", seconds=_check_seconds("seconds", seconds))
        rule.nth = _check_nth(nth)
        return self._add(rule)

    def refuse_starttls(self, reply: str = STARTTLS_REFUSAL) -> Faults:
        """Refuse every ``STARTTLS`` with ``reply`` (``454 4.7.0`` by default)."""
        return self.reply("STARTTLS", reply)

    def greylist(self, *, reply: str = GREYLIST_REPLY, retry_after: float = 0.0) -> Faults:
        """Greylist: refuse the first ``RCPT`` of each (client address, sender, recipient).

        The same triple is accepted when it comes again at least ``retry_after``
        seconds after its first attempt; earlier tries get ``reply`` again.

        Args:
            reply: the refusal, ``451 4.7.1`` by default.
            retry_after: seconds before a retry is accepted.
        """
        rule = _Rule("RCPT", "greylist", reply=check_reply(reply))
        rule.retry_after = _check_seconds("retry_after", retry_after)
        return self._add(rule)

    def random(self, stage: str, reply: str, probability: float, *, seed: int = 0) -> Faults:
        """Answer ``reply`` at ``stage`` with the given probability, reproducibly.

        Args:
            stage: one of :data:`STAGES`.
            reply: the reply line.
            probability: from 0 (never) to 1 (always).
            seed: the seed of this rule's own random generator: the same seed
                gives the same sequence of faults on every run.
        """
        if isinstance(probability, bool) or not isinstance(probability, (int, float)):
            raise ValueError(f"probability must be a number from 0 to 1; got {probability!r}")
        if not 0 <= probability <= 1:
            raise ValueError(f"probability must be from 0 to 1; got {probability!r}")
        rule = _Rule(check_stage(stage), "reply", reply=check_reply(reply))
        rule.probability, rule.rng = float(probability), _random.Random(seed)
        return self._add(rule)

    def clear(self) -> Faults:
        """Remove every rule: the server behaves normally again."""
        with self._lock:
            self._rules.clear()
        return self

    def __len__(self) -> int:
        with self._lock:
            return len(self._rules)

    def decide(self, stage: str, key: Hashable = None) -> Decision:
        """Count an arrival at ``stage`` and say what to do (called by the server).

        Every rule for the stage counts the arrival; delays add up, and the
        first reply or drop (in the order the rules were added) wins.

        Args:
            stage: a canonical stage name.
            key: what a greylist remembers: (client address, sender, recipient).
        """
        delay, outcome = 0.0, _NORMAL
        with self._lock:
            for rule in self._rules:
                if rule.stage != stage or not rule.fires(key):
                    continue
                if rule.action == "delay":
                    delay += rule.seconds
                elif outcome.normal:
                    outcome = Decision(reply=rule.reply, drop=rule.action == "drop")
        if delay == 0.0:
            return outcome
        return Decision(delay=delay, reply=outcome.reply, drop=outcome.drop)
