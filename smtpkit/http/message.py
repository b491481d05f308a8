"""A stored message read for the capture UI: its summary, its parts, its attachments.

Files in the Maildir start with the ``X-Peer``, ``X-MailFrom`` and ``X-RcptTo``
headers the Mailbox handler adds; they are read as the envelope, and left out of the
bytes a release sends on.

A :class:`Captured` is cheap to keep: it holds the parsed headers and, once a search
has asked for it, the text that searches look in. The whole message is parsed from
the file only when one message is read (:meth:`Captured.parsed`).
"""

from __future__ import annotations

import datetime
import email.parser
import email.policy
import functools
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

__all__ = ["ENVELOPE_HEADERS", "Captured", "attachment_bytes", "attachments", "without_envelope"]

#: The headers the Mailbox handler writes in front of each message.
ENVELOPE_HEADERS = ("x-peer", "x-mailfrom", "x-rcptto")
_PARSER = email.parser.BytesParser(policy=email.policy.default)


@dataclass(frozen=True)
class Captured:
    """One message of the Maildir.

    Attributes:
        id: its file name in the Maildir.
        path: the file.
        size: the file's size in bytes.
        time: when it was stored (the file's modification time, UTC).
    """

    id: str
    path: Path
    size: int
    time: datetime.datetime

    @classmethod
    def from_file(cls, id: str, path: Path, size: int, mtime: float) -> Captured:
        """The message stored in ``path`` (modified at ``mtime``, in seconds)."""
        time = datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc)
        return cls(id=id, path=path, size=size, time=time)

    @functools.cached_property
    def headers(self) -> EmailMessage:
        """The header block, parsed (the body is not kept)."""
        with self.path.open("rb") as file:
            message = _PARSER.parse(file, headersonly=True)
        assert isinstance(message, EmailMessage)
        return message

    @functools.cached_property
    def search_text(self) -> str:
        """From, To, Subject and the text and HTML bodies, case-folded, for searches."""
        message = self.parsed()
        fields = [self.header(name) for name in ("From", "To", "Subject")]
        bodies = [_body(message, "plain") or "", _body(message, "html") or ""]
        return "\n".join(fields + bodies).casefold()

    def raw(self) -> bytes:
        """The bytes as stored."""
        return self.path.read_bytes()

    def parsed(self) -> EmailMessage:
        """The whole message, parsed from the file now."""
        message = _PARSER.parsebytes(self.raw())
        assert isinstance(message, EmailMessage)
        return message

    def header(self, name: str) -> str:
        """A header's decoded value, or ``""``."""
        value = self.headers.get(name)
        return "" if value is None else str(value)

    def rcpt_tos(self) -> list[str]:
        """The envelope recipients (``X-RcptTo``)."""
        return [a.strip() for a in self.header("X-RcptTo").split(",") if a.strip()]

    def summary(self) -> dict[str, Any]:
        """The fields of the message list."""
        return {
            "id": self.id,
            "from": self.header("From"),
            "to": self.header("To"),
            "subject": self.header("Subject"),
            "size": self.size,
            "time": self.time.isoformat(timespec="seconds"),
            "mail_from": self.header("X-MailFrom"),
            "rcpt_tos": self.rcpt_tos(),
        }

    def detail(self) -> dict[str, Any]:
        """The summary with the headers, the text and HTML bodies and the attachments."""
        message = self.parsed()
        return {
            **self.summary(),
            "headers": [[name, str(value)] for name, value in message.items()],
            "text": _body(message, "plain"),
            "html": _body(message, "html"),
            "attachments": [
                {"index": index, **_attachment_info(part)}
                for index, part in enumerate(attachments(message))
            ],
        }

    def html(self) -> str | None:
        """The HTML body, or None."""
        return _body(self.parsed(), "html")

    def matches(self, query: str) -> bool:
        """Whether ``query`` (any case) is in its From, To, Subject or text/HTML body."""
        return query.casefold() in self.search_text


def attachments(message: EmailMessage) -> list[EmailMessage]:
    """The parts that are attachments, in order (their index is their place here)."""
    body_parts = {id(message.get_body(("plain",))), id(message.get_body(("html",)))}
    return [
        part
        for part in message.walk()
        if isinstance(part, EmailMessage)
        and not part.is_multipart()
        and id(part) not in body_parts
        and (part.get_content_disposition() == "attachment" or part.get_filename())
    ]


def attachment_bytes(part: EmailMessage) -> bytes:
    """The decoded bytes of an attachment part."""
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def without_envelope(raw: bytes) -> bytes:
    """The message as received: ``raw`` without the envelope headers in front.

    The ``Received:`` trace field the server put on top stays (a relay keeps the
    trace of each hop); the ``X-Peer``/``X-MailFrom``/``X-RcptTo`` lines after it go.
    """
    kept: list[bytes] = []
    rest = raw
    while True:
        name = rest.split(b":", 1)[0].strip().lower().decode("latin-1")
        if name not in ENVELOPE_HEADERS and name != "received":
            return b"".join(kept) + rest
        end = _field_end(rest)
        if end < 0:
            return b"".join(kept)
        if name == "received":
            kept.append(rest[:end])
        rest = rest[end:]


def _field_end(data: bytes) -> int:
    """The index just past the header field at the start of ``data`` (with its
    continuation lines), or -1 when its line does not end."""
    end = data.find(b"\n")
    while end >= 0 and data[end + 1 : end + 2] in (b" ", b"\t"):
        end = data.find(b"\n", end + 1)
    return end + 1 if end >= 0 else -1


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
    return {
        "filename": part.get_filename() or "",
        "content_type": part.get_content_type(),
        "size": len(attachment_bytes(part)),
    }
