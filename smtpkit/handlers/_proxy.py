"""`Proxy`: relay each message to another SMTP server."""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._common import _in_worker_thread, log
from ._headers import (
    _header_text,
    _message_id,
    _peer_text,
    _received_text,
    _sockname,
    _wants_received,
)

if TYPE_CHECKING:
    from smtpkit.smtp import SMTP, Envelope, Session


class _RelayFailure(Exception):
    """The relay did not take the message; ``permanent`` says whether to retry."""

    def __init__(self, permanent: bool) -> None:
        super().__init__("permanent" if permanent else "temporary")
        self.permanent = permanent


def _add_header_at_end_of_headers(content: bytes, header: bytes) -> bytes:
    """Insert ``header`` (no line ending) just before the blank line ending the headers.

    The header takes the line ending the message uses. A message with no
    blank line is all headers, so the header goes at the end.
    """
    lines = content.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line in (b"\r\n", b"\n", b"\r"):
            lines.insert(index, header + line)
            return b"".join(lines)
    if content and not content.endswith((b"\n", b"\r")):
        content += b"\r\n"
    return content + header + b"\r\n"


def _is_permanent(code: int) -> bool:
    return 500 <= code <= 599


@dataclass(frozen=True)
class _DSNParams:
    """The DSN parameters to pass on: MAIL's, and each recipient's (in RCPT order)."""

    mail: list[str]
    rcpt: list[list[str]]

    @classmethod
    def of(cls, envelope: Envelope) -> _DSNParams | None:
        """The envelope's DSN parameters, re-encoded; None when it has none."""
        mail = envelope.dsn.as_params() if envelope.dsn is not None else []
        rcpt = [d.as_params() for d in envelope.rcpt_dsn][: len(envelope.rcpt_tos)]
        rcpt += [[] for _ in range(len(envelope.rcpt_tos) - len(rcpt))]
        return cls(mail, rcpt) if mail or any(rcpt) else None


def _send(
    client: smtplib.SMTP,
    mail_from: str,
    rcpt_tos: list[str],
    data: bytes,
    mail_options: list[str],
    dsn: _DSNParams | None,
) -> dict[str, tuple[int, bytes]]:
    """``client.sendmail()``, passing the DSN parameters on when the upstream offers DSN.

    smtplib's sendmail gives every recipient the same RCPT parameters, and
    NOTIFY and ORCPT are per recipient, so with DSN the transaction is
    written out here, with sendmail's rules (SIZE, the refused recipients).
    """
    client.ehlo_or_helo_if_needed()
    binary = "BODY=BINARYMIME" in mail_options
    if binary and not (client.has_extn("chunking") and client.has_extn("binarymime")):
        raise _BinaryRefused
    if dsn is not None and not client.has_extn("dsn"):
        log.info("Proxy: the relay host does not offer DSN; not passing on the DSN parameters")
        dsn = None
    if dsn is None and not binary:
        return client.sendmail(mail_from, rcpt_tos, data, mail_options=mail_options)
    if dsn is None:
        dsn = _DSNParams([], [[] for _ in rcpt_tos])
    options = [*mail_options, *dsn.mail]
    if client.has_extn("size"):
        options.append(f"SIZE={len(data)}")
    code, text = client.mail(mail_from, options)
    if code != 250:
        _abandon(client, code)
        raise smtplib.SMTPSenderRefused(code, text, mail_from)
    refused: dict[str, tuple[int, bytes]] = {}
    for address, params in zip(rcpt_tos, dsn.rcpt, strict=True):
        code, text = client.rcpt(address, params)
        if code not in (250, 251):
            refused[address] = (code, text)
        if code == 421:
            _abandon(client, code)
            raise smtplib.SMTPRecipientsRefused(refused)
    if len(refused) == len(rcpt_tos):
        _abandon(client, 0)
        raise smtplib.SMTPRecipientsRefused(refused)
    code, text = _bdat_last(client, data) if binary else client.data(data)
    if code != 250:
        _abandon(client, code)
        raise smtplib.SMTPDataError(code, text)
    return refused


class _BinaryRefused(Exception):
    """A binary message, and an upstream without CHUNKING and BINARYMIME (RFC 3030 §3)."""


class _RequireTLSRefused(Exception):
    """A REQUIRETLS message, and an upstream without STARTTLS or REQUIRETLS (RFC 8689 §4.2)."""


def _start_required_tls(
    client: smtplib.SMTP, hostname: str, context: ssl.SSLContext | None
) -> None:
    """Start TLS upstream and check it offers REQUIRETLS there, or raise _RequireTLSRefused.

    The upstream's certificate is verified (``context``, or the system's
    trusted authorities): RFC 8689 §4.2.1 wants a verified server.
    """
    client.ehlo_or_helo_if_needed()
    if not client.has_extn("starttls"):
        raise _RequireTLSRefused("STARTTLS")
    # smtplib checks the certificate against the host given to its
    # constructor only; this client was built without one, then connected.
    client._host = hostname  # type: ignore[attr-defined]
    client.starttls(context=context or ssl.create_default_context())
    client.ehlo()
    if not client.has_extn("requiretls"):
        raise _RequireTLSRefused("REQUIRETLS")


def _bdat_last(client: smtplib.SMTP, data: bytes) -> tuple[int, bytes]:
    """Send the whole message as one ``BDAT <size> LAST`` chunk (smtplib has no BDAT)."""
    client.putcmd("BDAT", f"{len(data)} LAST")
    client.send(data)
    return client.getreply()


def _abandon(client: smtplib.SMTP, code: int) -> None:
    """End a failed transaction as sendmail does: close after a 421, else RSET."""
    if code == 421:
        client.close()
        return
    with contextlib.suppress(smtplib.SMTPServerDisconnected):
        client.rset()


class Proxy:
    """Relay each message to another SMTP server.

    The relay runs in a worker thread, so the event loop keeps serving other
    sessions while the upstream server answers. A ``Received:`` trace field
    (RFC 5321 §4.4) is put in front of the message, and an ``X-Peer`` header
    naming the client (``host:port``, ``[IPv6]:port`` or the socket path) is
    added at the end of the message headers.

    The DSN parameters of the envelope (``RET``, ``ENVID``, ``NOTIFY``,
    ``ORCPT``) are passed on when the upstream offers DSN, and dropped (with
    an info log line) when it does not.

    A ``BODY=BINARYMIME`` message (RFC 3030) goes upstream by ``BDAT``, and
    only to an upstream that offers CHUNKING and BINARYMIME; any other gets
    nothing and the client ``554 5.6.3``.

    A message that came with MAIL's ``REQUIRETLS`` (RFC 8689,
    ``envelope.require_tls``) goes upstream only over STARTTLS, with the
    upstream's certificate verified, and only to an upstream that offers
    REQUIRETLS after STARTTLS (the parameter is passed on); any other gets
    nothing and the client ``550 5.7.30``.

    Replies: ``250 OK`` when the upstream took the message for at least one
    recipient (refused recipients are logged); ``451 4.4.0 ...`` when the
    upstream could not be reached or deferred the message; ``554 5.0.0 ...``
    when it refused the message permanently. Exception text never reaches the
    client; it goes to the log.

    Args:
        remote_hostname: the upstream server's host name or address.
        remote_port: its port.
        timeout: seconds to wait for the upstream on each network operation.
        received_header: put the ``Received:`` field in front (the default);
            it is also left out when the server's ``received_header`` is off.
        tls_context: the client context STARTTLS to the upstream uses (for
            REQUIRETLS messages); None = the system's trusted authorities.
    """

    def __init__(
        self,
        remote_hostname: str,
        remote_port: int,
        *,
        timeout: float = 60.0,
        received_header: bool = True,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(received_header, bool):
            raise TypeError(f"received_header = {received_header!r}: expected True or False")
        self._hostname = remote_hostname
        self._port = remote_port
        self._timeout = timeout
        self.received_header = received_header
        self._tls_context = tls_context

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Relay the message and reply with the outcome.

        Returns:
            ``"250 OK"``, a ``451`` (try later) or a ``554`` (refused) reply.
        """
        content = envelope.content
        if not isinstance(content, (bytes, bytearray)):
            content = envelope.original_content or b""
        peer = _header_text(_peer_text(session.peer, _sockname(server))).encode("ascii")
        data = _add_header_at_end_of_headers(bytes(content), b"X-Peer: " + peer)
        if _wants_received(server, self.received_header):
            received = _received_text(server, session, envelope, _message_id())
            data = (received or "").encode("utf-8") + data
        local_name = getattr(server, "hostname", None) or socket.gethostname()
        try:
            refused = await _in_worker_thread(
                self._deliver,
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                data,
                self._mail_options(envelope),
                str(local_name),
                _DSNParams.of(envelope),
            )
        except _RequireTLSRefused as missing:
            log.warning("Proxy: the relay host lacks %s for a REQUIRETLS message", missing)
            return "550 5.7.30 REQUIRETLS support required: the relay host does not offer it"
        except _BinaryRefused:
            log.warning("Proxy: the relay host does not take binary messages (BINARYMIME)")
            return "554 5.6.3 The relay host cannot take a binary (BINARYMIME) message"
        except _RelayFailure as failure:
            if failure.permanent:
                return "554 5.0.0 The relay host refused the message"
            return "451 4.4.0 The relay host is unavailable; try again later"
        if refused:
            log.info("Proxy: the relay host refused some recipients: %s", refused)
        return "250 OK"

    @staticmethod
    def _mail_options(envelope: Envelope) -> list[str]:
        options = [o for o in envelope.mail_options if o.upper().startswith("BODY=")]
        wants_utf8 = any(o.upper() == "SMTPUTF8" for o in envelope.mail_options)
        if envelope.smtp_utf8 or wants_utf8:
            options.append("SMTPUTF8")
        if getattr(envelope, "require_tls", False):
            options.append("REQUIRETLS")
        return options

    def _deliver(
        self,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        mail_options: list[str],
        local_hostname: str,
        dsn: _DSNParams | None = None,
    ) -> dict[str, tuple[int, bytes]]:
        """Send one message upstream (blocking; runs in a worker thread).

        Returns:
            The recipients the upstream refused, when it accepted the others.

        Raises:
            _RelayFailure: no recipient got the message.
        """
        client = smtplib.SMTP(local_hostname=local_hostname, timeout=self._timeout)
        try:
            client.connect(self._hostname, self._port)
            if "REQUIRETLS" in mail_options:
                _start_required_tls(client, self._hostname, self._tls_context)
            return _send(client, mail_from, rcpt_tos, data, mail_options, dsn)
        except smtplib.SMTPRecipientsRefused as error:
            log.warning("Proxy: the relay host refused every recipient: %s", error.recipients)
            codes = [code for code, _ in error.recipients.values()]
            raise _RelayFailure(all(_is_permanent(c) for c in codes)) from error
        except smtplib.SMTPResponseException as error:
            log.warning("Proxy: the relay host replied %s %r", error.smtp_code, error.smtp_error)
            raise _RelayFailure(_is_permanent(error.smtp_code)) from error
        except smtplib.SMTPNotSupportedError as error:
            log.warning("Proxy: the relay host lacks a needed extension: %s", error)
            raise _RelayFailure(permanent=True) from error
        except (OSError, smtplib.SMTPException) as error:
            log.warning(
                "Proxy: relaying to %s:%s failed", self._hostname, self._port, exc_info=True
            )
            raise _RelayFailure(permanent=False) from error
        finally:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                client.quit()
            client.close()
