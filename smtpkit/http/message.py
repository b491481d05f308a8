"""A stored message read for the capture UI: its summary, its parts, its attachments.

Files in the Maildir start with the ``X-Peer``, ``X-MailFrom`` and ``X-RcptTo``
headers the Mailbox handler adds; they are read as the envelope, and left out of the
bytes a release sends on.
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

__all__ = ["ENVELOPE_HEADERS", "Captured", "parse", "without_envelope"]

#: The headers the Mailbox handler writes in front of each message.
ENVELOPE_HEADERS = ("x-peer", "x-mailfrom", "x-rcptto")
_PARSER = email.parser.BytesParser(policy=email.policy.default)


@dataclass(frozen=True)
class Captured:
    """One message of the Maildir, parsed.

    Attributes:
        id: its file name in the Maildir.
        raw: the bytes as stored.
        time: when it was stored (the file's modification time, UTC).
        message: the parsed message (headers decoded).
    """

    id: str
    raw: bytes
    time: datetime.datetime
    message: EmailMessage

    def summary(self) -> dict[str, Any]:
        """The fields of the message list."""
        return {
            "id": self.id,
            "from": _header(self.message, "From"),
            "to": _header(self.message, "To"),
            "subject": _header(self.message, "Subject"),
            "size": len(self.raw),
            "time": self.time.isoformat(timespec="seconds"),
            "mail_from": _header(self.message, "X-MailFrom"),
            "rcpt_tos": self.rcpt_tos(),
        }

    def rcpt_tos(self) -> list[str]:
        """The envelope recipients (``X-RcptTo``)."""
        return [a.strip() for a in _header(self.message, "X-RcptTo").split(",") if a.strip()]

    def detail(self) -> dict[str, Any]:
        """The summary with the headers, the text and HTML bodies and the attachments."""
        return {
            **self.summary(),
            "headers": [[name, str(value)] for name, value in self.message.items()],
            "text": _body(self.message, "plain"),
            "html": _body(self.message, "html"),
            "attachments": [
                {"index": index, **_attachment_info(part)}
                for index, part in enumerate(self.attachments())
            ],
        }

    def attachments(self) -> list[EmailMessage]:
        """The parts that are attachments, in order (their index is their place here)."""
        body_parts = {id(self.message.get_body(("plain",))), id(self.message.get_body(("html",)))}
        return [
            part
            for part in self.message.walk()
            if isinstance(part, EmailMessage)
            and not part.is_multipart()
            and id(part) not in body_parts
            and (part.get_content_disposition() == "attachment" or part.get_filename())
        ]

    def matches(self, query: str) -> bool:
        """Whether ``query`` (any case) is in its From, To, Subject or text/HTML body."""
        needle = query.casefold()
        fields = (_header(self.message, name) for name in ("From", "To", "Subject"))
        bodies = (_body(self.message, "plain"), _body(self.message, "html"))
        return any(needle in text.casefold() for text in (*fields, *bodies) if text)


def parse(id: str, raw: bytes, mtime: float) -> Captured:
    """Parse the stored bytes of message ``id``."""
    message = _PARSER.parsebytes(raw)
    assert isinstance(message, EmailMessage)
    time = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
    return Captured(id=id, raw=raw, time=time, message=message)


def without_envelope(raw: bytes) -> bytes:
    """The message as received: ``raw`` without the envelope headers in front."""
    rest = raw
    while rest.split(b":", 1)[0].strip().lower().decode("latin-1") in ENVELOPE_HEADERS:
        line_end = rest.find(b"\n")
        if line_end < 0:
            return b""
        rest = rest[line_end + 1 :]
    return rest


def _header(message: EmailMessage, name: str) -> str:
    value = message.get(name)
    return "" if value is None else str(value)


def _body(message: EmailMessage, subtype: str) -> str | None:
    part = message.get_body((subtype,))
    if not isinstance(part, EmailMessage) or part.get_content_type() != f"text/{subtype}":
        return None
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken transfer encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else None


def _attachment_info(part: EmailMessage) -> dict[str, Any]:
    payload = part.get_payload(decode=True)
    return {
        "filename": part.get_filename() or "",
        "content_type": part.get_content_type(),
        "size": len(payload) if isinstance(payload, bytes) else 0,
    }


def attachment_bytes(part: EmailMessage) -> bytes:
    """The decoded bytes of an attachment part."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""
