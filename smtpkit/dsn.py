"""Delivery status notifications (RFC 3464) for applications that send bounces.

:func:`build_report` makes the ``multipart/report; report-type=delivery-status``
message an MTA sends back to a message's sender when it fails (or delays,
or, when asked with ``NOTIFY=SUCCESS``, delivers) a recipient:

1. a ``text/plain`` part for people;
2. the ``message/delivery-status`` part: one block about the message
   (``Reporting-MTA``, ``Original-Envelope-Id``, ``Arrival-Date``), then one
   block per recipient (``Original-Recipient``, ``Final-Recipient``,
   ``Action``, ``Status``, ``Remote-MTA``, ``Diagnostic-Code``,
   ``Last-Attempt-Date``, ``Will-Retry-Until``);
3. the returned message, as its sender asked with ``RET``: the whole of it
   (``message/rfc822``) for ``FULL``, its header section
   (``text/rfc822-headers``) for ``HDRS``.

A report must be sent with an empty envelope sender (``MAIL FROM:<>``,
RFC 3461 §6.2 and RFC 5321 §4.5.5), so that it can never cause another one.
:data:`ENVELOPE_SENDER` is that value.

The values DSN clients send (``RET``, ``ENVID``, ``NOTIFY``, ``ORCPT``) are
parsed into :class:`MailDSN` and :class:`RcptDSN` (from ``smtpkit._dsn``,
re-exported here); :func:`build_report` and :class:`RecipientReport` take
them as they are.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime, make_msgid
from typing import Literal

from ._dsn import (
    DSNError,
    MailDSN,
    RcptDSN,
    XtextError,
    parse_mail_dsn,
    parse_rcpt_dsn,
    xtext_decode,
    xtext_encode,
)

__all__ = [
    "ACTIONS",
    "ENVELOPE_SENDER",
    "DSNError",
    "MailDSN",
    "RcptDSN",
    "RecipientReport",
    "XtextError",
    "build_report",
    "parse_mail_dsn",
    "parse_rcpt_dsn",
    "xtext_decode",
    "xtext_encode",
]

#: The envelope sender a report must be sent with (the null reverse-path).
ENVELOPE_SENDER = "<>"

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
#: RFC 3464 §2.3.3: the action values, with the status class each must carry.
ACTIONS: dict[str, str] = {
    "failed": "5",
    "delayed": "4",
    "delivered": "2",
    "relayed": "2",
    "expanded": "2",
}

# RFC 3464 §2.3.4 (RFC 3463 §2): status-code = class "." subject "." detail
_STATUS = re.compile(r"[245]\.[0-9]{1,3}\.[0-9]{1,3}")
# A reply line as an SMTP server sent it: code, then text.
_REPLY = re.compile(r"[2-5][0-9]{2}(?:[ -].*)?")
_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
}
_SUCCESS_SUBJECT = "Successful Mail Delivery Report"


@dataclass(frozen=True)
class RecipientReport:
    """What became of one recipient.

    Args:
        final_recipient: the address the report is about (RCPT's address).
        action: ``failed``, ``delayed``, ``delivered``, ``relayed`` or
            ``expanded``.
        status: the RFC 3463 status, ``"5.1.1"``; its class must match the
            action (5 for failed, 4 for delayed, 2 for the others).
        original_recipient: RCPT's ORCPT, ``(addr_type, address)``, or None.
        diagnostic_code: the reply the remote server gave, such as
            ``"550 5.1.1 User unknown"`` (written as ``smtp; 550 …``), or None.
        remote_mta: the host name of the server that gave it, or None.
        last_attempt_date: when delivery was last tried (timezone-aware), or None.
        will_retry_until: for ``delayed``, when the MTA gives up (aware), or None.

    Raises:
        ValueError: an unknown action, a malformed status or one whose class
            does not match the action, a malformed reply, a naive datetime,
            or a value with a line break.
    """

    final_recipient: str
    action: Action
    status: str
    original_recipient: tuple[str, str] | None = None
    diagnostic_code: str | None = None
    remote_mta: str | None = None
    last_attempt_date: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if not isinstance(self.status, str) or not _STATUS.fullmatch(self.status):
            raise ValueError(f"status must be a 'class.subject.detail' code, not {self.status!r}")
        if self.status[0] != ACTIONS[self.action]:
            raise ValueError(
                f"status {self.status} does not fit action {self.action!r}"
                f" (expected class {ACTIONS[self.action]})"
            )
        if self.diagnostic_code is not None and not _REPLY.fullmatch(self.diagnostic_code):
            raise ValueError(
                f"diagnostic_code must be an SMTP reply such as '550 5.1.1 User unknown',"
                f" not {self.diagnostic_code!r}"
            )
        _check_line("final_recipient", self.final_recipient)
        for name in ("diagnostic_code", "remote_mta"):
            _check_line(name, getattr(self, name))
        if self.original_recipient is not None:
            for part in self.original_recipient:
                _check_line("original_recipient", part)
        _check_date("last_attempt_date", self.last_attempt_date)
        _check_date("will_retry_until", self.will_retry_until)

    def fields(self) -> list[tuple[str, str]]:
        """The per-recipient block, as ``(name, value)`` pairs in RFC 3464 order."""
        fields: list[tuple[str, str]] = []
        if self.original_recipient is not None:
            addr_type, address = self.original_recipient
            fields.append(("Original-Recipient", f"{addr_type}; {address}"))
        fields += [
            ("Final-Recipient", f"rfc822; {self.final_recipient}"),
            ("Action", self.action),
            ("Status", self.status),
        ]
        if self.remote_mta is not None:
            fields.append(("Remote-MTA", f"dns; {self.remote_mta}"))
        if self.diagnostic_code is not None:
            fields.append(("Diagnostic-Code", f"smtp; {self.diagnostic_code}"))
        if self.last_attempt_date is not None:
            fields.append(("Last-Attempt-Date", format_datetime(self.last_attempt_date)))
        if self.will_retry_until is not None:
            fields.append(("Will-Retry-Until", format_datetime(self.will_retry_until)))
        return fields


def build_report(
    original: bytes | Message,
    recipients: Sequence[RecipientReport],
    *,
    reporting_mta: str,
    to: str,
    ret: Literal["FULL", "HDRS"] | None = None,
    envid: str | None = None,
    arrival_date: datetime | None = None,
    sender: str | None = None,
    subject: str | None = None,
    text: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """Build an RFC 3464 delivery status notification about ``original``.

    The result must be sent with the empty envelope sender,
    :data:`ENVELOPE_SENDER` (``MAIL FROM:<>``), to ``to``.

    Args:
        original: the message the report is about, as bytes or parsed.
        recipients: one :class:`RecipientReport` per recipient reported on.
        reporting_mta: this MTA's host name (``Reporting-MTA: dns; …``).
        to: the original envelope sender, who gets the report.
        ret: the sender's MAIL ``RET``: ``"FULL"`` returns the whole
            message, ``"HDRS"`` (and None, the default: RFC 3461 §4.3
            leaves it to the MTA) its header section only.
        envid: the sender's MAIL ``ENVID``, decoded, or None.
        arrival_date: when the message arrived (timezone-aware), or None.
        sender: the report's ``From:``; ``MAILER-DAEMON@<reporting_mta>``
            by default.
        subject: the ``Subject:``; by default one that names the action.
        text: the part for people; by default one line per recipient.
        date: the report's ``Date:`` (aware); now by default.

    Raises:
        ValueError: no recipients, a ``ret`` other than FULL/HDRS/None, a
            naive datetime, or a value with a line break in it.
    """
    if not recipients:
        raise ValueError("recipients must name at least one RecipientReport")
    if ret not in ("FULL", "HDRS", None):
        raise ValueError(f"ret must be 'FULL', 'HDRS' or None, not {ret!r}")
    for name, value in (("reporting_mta", reporting_mta), ("to", to), ("envid", envid)):
        _check_line(name, value)
    _check_date("arrival_date", arrival_date)
    _check_date("date", date)
    message = _parse(original)
    report = EmailMessage()
    report["From"] = sender or f"MAILER-DAEMON@{reporting_mta}"
    report["To"] = to
    report["Subject"] = subject or _subject(recipients)
    report["Date"] = format_datetime(date or datetime.now(timezone.utc))
    report["Message-ID"] = make_msgid(domain=reporting_mta)
    report["Auto-Submitted"] = "auto-replied"
    report["MIME-Version"] = "1.0"
    report["Content-Type"] = "multipart/report; report-type=delivery-status"
    status = _status_part(reporting_mta, envid, arrival_date, recipients)
    human = MIMEPart()
    human.set_content(text or _text(reporting_mta, recipients))
    report.set_payload([human, status, _returned_part(message, original, ret or "HDRS")])
    return report


def _status_part(
    reporting_mta: str,
    envid: str | None,
    arrival_date: datetime | None,
    recipients: Sequence[RecipientReport],
) -> MIMEPart:
    """The ``message/delivery-status`` part: per-message block, then one per recipient."""
    per_message = [("Reporting-MTA", f"dns; {reporting_mta}")]
    if envid is not None:
        per_message.append(("Original-Envelope-Id", envid))
    if arrival_date is not None:
        per_message.append(("Arrival-Date", format_datetime(arrival_date)))
    blocks = [_block(per_message)] + [_block(r.fields()) for r in recipients]
    part = MIMEPart()
    part["Content-Type"] = "message/delivery-status"
    part.set_payload(blocks)  # type: ignore[arg-type]
    return part


def _block(fields: list[tuple[str, str]]) -> Message:
    block = Message(policy=email.policy.default)
    for name, value in fields:
        block[name] = value
    return block


def _returned_part(message: Message, original: bytes | Message, ret: str) -> MIMEPart:
    part = MIMEPart()
    if ret == "FULL":
        part.set_content(message)
        return part
    headers = _header_section(original)
    part.set_content(headers, subtype="rfc822-headers")
    return part


def _header_section(original: bytes | Message) -> str:
    """The header section of the message, as text (RFC 3462's text/rfc822-headers)."""
    if isinstance(original, Message):
        return "".join(f"{name}: {value}\n" for name, value in original.items())
    raw = original.replace(b"\r\n", b"\n")
    head, _, _ = raw.partition(b"\n\n")
    return head.decode("utf-8", "replace") + "\n"


def _parse(original: bytes | Message) -> Message:
    if isinstance(original, Message):
        return original
    if isinstance(original, (bytes, bytearray)):
        return email.message_from_bytes(bytes(original), policy=email.policy.default)
    raise TypeError(f"original must be bytes or an email Message, not {type(original).__name__}")


def _subject(recipients: Sequence[RecipientReport]) -> str:
    actions = {r.action for r in recipients}
    for action in ("failed", "delayed"):
        if action in actions:
            return _SUBJECTS[action]
    return _SUCCESS_SUBJECT


def _text(reporting_mta: str, recipients: Sequence[RecipientReport]) -> str:
    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    for r in recipients:
        line = f"<{r.final_recipient}>: {r.action} ({r.status})"
        if r.diagnostic_code is not None:
            line += f": {r.diagnostic_code}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _check_line(name: str, value: str | None) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{name} must be one line without NUL, CR or LF, not {value!r}")


def _check_date(name: str, value: datetime | None) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, not {value!r}")
