"""`Proxy`: relay each message to another SMTP server."""

from __future__ import annotations

import contextlib
import smtplib
import socket
from typing import TYPE_CHECKING

from ._common import _in_worker_thread, log
from ._headers import _header_text, _peer_text, _sockname

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


class Proxy:
    """Relay each message to another SMTP server.

    The relay runs in a worker thread, so the event loop keeps serving other
    sessions while the upstream server answers. An ``X-Peer`` header naming
    the client (``host:port``, ``[IPv6]:port`` or the socket path) is added at
    the end of the message headers.

    Replies: ``250 OK`` when the upstream took the message for at least one
    recipient (refused recipients are logged); ``451 4.4.0 ...`` when the
    upstream could not be reached or deferred the message; ``554 5.0.0 ...``
    when it refused the message permanently. Exception text never reaches the
    client; it goes to the log.

    Args:
        remote_hostname: the upstream server's host name or address.
        remote_port: its port.
        timeout: seconds to wait for the upstream on each network operation.
    """

    def __init__(self, remote_hostname: str, remote_port: int, *, timeout: float = 60.0) -> None:
        self._hostname = remote_hostname
        self._port = remote_port
        self._timeout = timeout

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
        local_name = getattr(server, "hostname", None) or socket.gethostname()
        try:
            refused = await _in_worker_thread(
                self._deliver,
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                data,
                self._mail_options(envelope),
                str(local_name),
            )
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
        return options

    def _deliver(
        self,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        mail_options: list[str],
        local_hostname: str,
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
            return client.sendmail(mail_from, rcpt_tos, data, mail_options=mail_options)
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
