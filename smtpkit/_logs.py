"""The session log and the transcript, and the JSON log format.

Two loggers, fed by the connection events of :mod:`smtpkit._events`:

* ``smtpkit.session`` at INFO: one line per connection event (``connect``,
  ``proxy``, ``tls``, ``auth``, ``disconnect``), one per transaction outcome
  (``accepted``, ``refused``), one per ``limit`` hit. Each line starts with the
  session id.
* ``smtpkit.transcript`` at DEBUG: every command and reply, ``<`` for the
  client, ``>`` for the server; AUTH payloads as ``****``, no message bodies.

Whether a connection is followed, and whether its transcript is kept, is
decided once, when it is made: with both loggers above their level a
connection pays nothing more.

Every line carries its fields in ``record.smtpkit`` (a dict);
:class:`JsonFormatter` writes them beside ``time``, ``level``, ``logger`` and
``message``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ._events import Outcome, Record, Subscriber
from ._output import IsoFormatter

__all__ = ["FIELDS", "SESSION_LOG", "JsonFormatter", "SessionLog"]

session_log = logging.getLogger("smtpkit.session")
transcript_log = logging.getLogger("smtpkit.transcript")

#: The fields of a JSON line, in order (those a line has no value for are left out).
FIELDS = (
    "time",
    "level",
    "logger",
    "message",
    "session",
    "event",
    "peer",
    "client",
    "tls",
    "mechanism",
    "login",
    "result",
    "id",
    "from",
    "to",
    "size",
    "duration",
    "stage",
    "reply",
    "limit",
    "messages",
    "reason",
    "direction",
    "line",
)


def _text(value: Any) -> str:
    """A field value in a text line: quoted when it has spaces or quotes, or is empty."""
    if type(value) is str:
        text = value
    elif isinstance(value, float):
        return f"{value:.3f}s"
    elif isinstance(value, (list, tuple)):
        text = ",".join(f"<{v}>" for v in value)
    else:
        text = str(value)
    if not text or " " in text or '"' in text:
        return json.dumps(text, ensure_ascii=False)
    return text


class SessionLog(Subscriber):
    """Writes the session log and the transcript."""

    def wanted(self) -> bool:
        return session_log.isEnabledFor(logging.INFO) or self.transcribes()

    def transcribes(self) -> bool:
        return transcript_log.isEnabledFor(logging.DEBUG)

    def _info(self, record: Record, event: str, fields: dict[str, Any]) -> None:
        if not session_log.isEnabledFor(logging.INFO):
            return
        parts = [record.session_id, event]
        parts += [f"{key}={_text(value)}" for key, value in fields.items()]
        data = {"session": record.session_id, "event": event, "peer": record.peer, **fields}
        _emit(session_log, logging.INFO, " ".join(parts), data)

    def connection_made(self, record: Record) -> None:
        self._info(record, "connect", {"peer": record.peer, "tls": record.tls or "no"})

    def proxied(self, record: Record) -> None:
        self._info(record, "proxy", {"client": record.client})

    def tls(self, record: Record, error: str | None) -> None:
        if error is None:
            self._info(record, "tls", {"tls": record.tls, "result": "success"})
        else:
            self._info(record, "tls", {"result": "failure", "reason": error})

    def auth(self, record: Record, mechanism: str, success: bool) -> None:
        result = "success" if success else "failure"
        if success and record.login is not None:
            self._info(
                record, "auth", {"mechanism": mechanism, "login": record.login, "result": result}
            )
        else:
            self._info(record, "auth", {"mechanism": mechanism, "result": result})

    def transaction(self, record: Record, outcome: Outcome) -> None:
        if not outcome.accepted:
            self._info(record, "refused", {"stage": outcome.stage, "reply": outcome.reply})
            return
        fields: dict[str, Any] = {
            "id": outcome.id,
            "from": outcome.mail_from or "",
            "to": list(outcome.recipients),
            "size": outcome.size,
            "duration": round(outcome.duration, 6),
            "tls": record.tls or "no",
        }
        if record.login:
            fields["login"] = record.login
        self._info(record, "accepted", fields)

    def limit(self, record: Record | None, name: str) -> None:
        if record is not None:
            self._info(record, "limit", {"limit": name})

    def connection_lost(self, record: Record) -> None:
        fields = {
            "duration": round(record.duration, 6),
            "messages": record.messages,
            "reason": record.reason,
        }
        self._info(record, "disconnect", fields)

    def line(self, record: Record, direction: str, text: str) -> None:
        if not transcript_log.isEnabledFor(logging.DEBUG):
            return
        data = {"session": record.session_id, "event": "transcript", "peer": record.peer}
        data.update(direction=direction, line=text)
        _emit(transcript_log, logging.DEBUG, f"{record.session_id} {direction} {text}", data)


def _emit(logger: logging.Logger, level: int, message: str, data: dict[str, Any]) -> None:
    """Log ``message`` with its fields; the caller checked the level.

    The record is made directly: there is no caller's frame worth looking up.
    """
    record = logger.makeRecord(
        logger.name, level, __file__, 0, message, (), None, extra={"smtpkit": data}
    )
    logger.handle(record)


#: The one session log, subscribed by the protocol.
SESSION_LOG = SessionLog()


class JsonFormatter(IsoFormatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message`` and the fields.

    The fields are those the line carries in ``record.smtpkit`` (see :data:`FIELDS`);
    a traceback, when there is one, is in ``exception``.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "smtpkit", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)
