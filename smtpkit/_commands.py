"""The commands of RFC 5321 and RFC 3207 (STARTTLS), as ``smtp_<VERB>`` methods."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import ssl
import warnings
from collections.abc import Callable
from typing import Any, cast

from . import _bdat as bdat
from . import _replies as replies
from ._bdat import ChunkDecoder, ChunkedMessage, parse_bdat
from ._connection import Connection, _Coroutine, _ssl_info
from ._constants import MISSING
from ._dsn import (
    MAIL_KEYWORDS,
    RCPT_KEYWORDS,
    MailDSN,
    RcptDSN,
    parse_mail_dsn,
    parse_rcpt_dsn,
)
from ._grammar import GrammarError, parse_params, parse_path, strip_keyword
from ._replies import Reply, SMTPReplyError
from ._syntax import syntax
from ._transfer import Transfer

log = logging.getLogger("smtpkit.smtp")
#: The DSN parameters of a recipient that had none (shared: it is frozen).
NO_RCPT_DSN = RcptDSN()


class TLSSetupException(Exception):
    """The TLS handshake after STARTTLS failed.

    The handler's ``handle_exception`` receives it (its ``__cause__`` is the
    error of the handshake); the connection is closed whatever it returns.
    """


#: The handle_DATA_ABORT calls of BDAT messages left unfinished, while they run.
_ABORTS: set[asyncio.Task[None]] = set()


class Commands(Connection):
    """The ``smtp_<VERB>`` methods of :class:`smtpkit.smtp.SMTP`."""

    data_size_limit: int | None
    max_recipients: int
    line_length_limit: int
    local_part_limit: int
    tls_handshake_timeout: float
    _decode_data: bool
    #: Offer CHUNKING and BINARYMIME (RFC 3030) and take BDAT. Off on the bare
    #: class, as aiosmtpd has neither; on in ServerConfig (``chunking``).
    chunking: bool = False
    #: The message arriving by BDAT in this transaction, or None.
    _bdat: ChunkedMessage | None = None
    #: The greeting a refused BDAT asks for first.
    _hello_verb = "EHLO"
    #: A TLS-policy refusal of the BDAT being read, sent once its octets are.
    _policy_refusal: Reply | None = None
    #: Offer DSN (RFC 3461) and read RET/ENVID on MAIL and NOTIFY/ORCPT on
    #: RCPT. Off on the bare class, as aiosmtpd has none (it answers 555 to
    #: those parameters); on in ServerConfig (``dsn``).
    dsn: bool = False
    #: Whether the handlers that store or relay a message (Mailbox, Proxy,
    #: the App's routes) put a Received field in front of it.
    received_header: bool = True

    def _advertised_mechanisms(self) -> list[str]:
        return []

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str | None) -> None:
        if not hostname:
            await self._push(replies.HELO_SYNTAX)
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = False
        status = await self._call_handler_hook("HELO", hostname)
        if status is MISSING:
            self.session.host_name = hostname
            await self._push(f"250 {self.hostname}", exempt=True)
            return
        await self._push_hook_reply(status, "handle_HELO", exempt=True)

    def _ehlo_lines(self) -> list[str]:
        lines = [f"250-{self.hostname}"]
        if self.data_size_limit:
            lines.append(f"250-SIZE {self.data_size_limit}")
        if not self._decode_data:
            lines.append("250-8BITMIME")
        if self.enable_SMTPUTF8:
            lines.append("250-SMTPUTF8")
        if self.dsn:
            lines.append("250-DSN")
        lines.append("250-PIPELINING")
        if self.tls_context and not self._tls_active:
            lines.append("250-STARTTLS")
        mechanisms = self._advertised_mechanisms()
        if mechanisms:
            lines.append("250-AUTH " + " ".join(mechanisms))
        if self.enhanced_status_codes:
            lines.append("250-ENHANCEDSTATUSCODES")
        if self.chunking:
            lines += ("250-CHUNKING", "250-BINARYMIME")
        return lines

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str | None) -> None:
        if not hostname:
            await self._push(replies.EHLO_SYNTAX)
            return
        assert self.session is not None
        self._set_rset_state()
        self.session.extended_smtp = True
        responses = self._ehlo_lines()
        if hasattr(self, "ehlo_hook"):
            warnings.warn(
                "Use handler.handle_EHLO() instead of .ehlo_hook()",
                DeprecationWarning,
                stacklevel=2,
            )
            for line in responses:
                await self._push(line, exempt=True)
            responses = []
            await self.ehlo_hook()
        hook = self._hook("EHLO")
        if hook is None:
            self.session.host_name = hostname
            responses.append("250 HELP")
            for line in responses:
                await self._push(line, exempt=True)
        elif _ehlo_hook_version(hook) == 4:
            # Deprecated form: replies so far go out, the hook sends the last.
            for line in responses:
                await self._push(line, exempt=True)
            status = await self._call_handler_hook("EHLO", hostname)
            await self._push_hook_reply(status, "handle_EHLO", exempt=True)
        else:
            responses.append("250 HELP")
            status = await self._call_handler_hook("EHLO", hostname, responses)
            await self._push_hook_reply(status, "handle_EHLO", exempt=True)

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str | None) -> None:
        status = await self._call_handler_hook("NOOP", arg)
        await self._hook_or_default(status, replies.OK, "handle_NOOP")

    @syntax("QUIT")
    async def smtp_QUIT(self, arg: str | None) -> None:
        if arg:
            await self._push(replies.QUIT_SYNTAX)
            return
        status = await self._call_handler_hook("QUIT")
        await self._hook_or_default(status, replies.BYE, "handle_QUIT")
        self._close()

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str | None) -> None:
        if arg:
            await self._push(replies.STARTTLS_SYNTAX)
            return
        if self._tls_active:
            # Also on implicit TLS, where the SMTP may have no tls_context.
            await self._push(replies.TLS_ALREADY_ACTIVE)
            return
        if not self.tls_context:
            await self._push(replies.TLS_NOT_AVAILABLE)
            return
        await self._start_tls()

    async def _start_tls(self) -> None:
        assert self.tls_context is not None and self.session is not None
        self._write_now(replies.READY_FOR_TLS)
        # RFC 3207 §4.2 and CVE-2011-0411: whatever the client pipelined
        # after STARTTLS in plaintext is thrown away, never executed.
        self._buf.clear()
        old = self.transport
        assert old is not None
        try:
            new = await self.loop.start_tls(
                cast("asyncio.WriteTransport", old),  # the stubs of 3.11+ ask for one
                self,
                self.tls_context,
                server_side=True,
                ssl_handshake_timeout=self.tls_handshake_timeout,
            )
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ConnectionError) as error:
            log.info("%r TLS handshake failed: %s", self.session.peer, error)
            if self._observed is not None:
                self._observed.tls_done(None, error)
            self._tls_failed(old, error)
            await self._report_tls_failure(error)
            raise ConnectionResetError("TLS handshake failed") from error
        if new is None or self._closing:
            self._tls_failed(old, None)
            await self._report_tls_failure(None)
            raise ConnectionResetError("connection closed during the TLS handshake")
        # Not clearing the buffer here: it may already hold the client's
        # first command over TLS, decrypted as the handshake completed.
        self.transport = new
        # RFC 3207 §4.2: forget everything learnt before TLS.
        peer, proxy_data = self.session.peer, self.session.proxy_data
        session = self.session = self._create_session()
        session.peer, session.proxy_data = peer, proxy_data
        session.ssl = _ssl_info(new)
        self._set_rset_state()
        self._tls_active = True
        if self._observed is not None:
            self._observed.tls_done(session.ssl, None)
        self._tls_handshake_okay = await self._starttls_hook_okay(session)

    async def _report_tls_failure(self, cause: Exception | None) -> None:
        """Tell the handler's ``handle_exception`` (the client is gone: no reply)."""
        error = TLSSetupException(f"TLS handshake failed: {cause or 'connection closed'}")
        error.__cause__ = cause
        await self.handle_exception(error)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # Already logged, without a traceback: failed handshakes are
            # common (scanners, clients that distrust the certificate).
            return await self._ask_exception_hook(error)
        return await super().handle_exception(error)

    handle_exception.__doc__ = Connection.handle_exception.__doc__

    def _tls_failed(self, old: asyncio.BaseTransport, error: Exception | None) -> None:
        self._closing = True
        old.abort()  # type: ignore[attr-defined]
        if self.transport is not None:
            # asyncio does not pass connection_lost on to the protocol when
            # the connection drops (or times out) in the middle of a handshake.
            self.connection_lost(error)

    async def _starttls_hook_okay(self, session: Any) -> bool:
        """Ask ``handle_STARTTLS``; a hook that raises refuses (fail closed)."""
        hook = self._hook("STARTTLS")
        if hook is None:
            return True
        try:
            okay = hook(self, session, self.envelope)
            if inspect.isawaitable(okay):
                okay = await okay
        except Exception:
            log.exception("%r handle_STARTTLS raised; refusing commands", session.peer)
            return False
        return bool(okay)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str | None) -> None:
        if await self.check_auth_needed("HELP"):
            return
        reply = replies.HELP_COMMANDS
        if arg:
            method = self._command_method(arg.upper())
            if method is not None and self._syntax_available(method):
                assert self.session is not None
                text = method.__smtp_syntax__  # type: ignore[attr-defined]
                extended = method.__smtp_syntax_extended__  # type: ignore[attr-defined]
                if self.session.extended_smtp and extended:
                    text += extended
                await self._push(replies.HELP_SYNTAX.fill(syntax=text))
                return
            reply = replies.HELP_UNKNOWN
        commands = sorted(
            name[5:]
            for name in dir(self)
            if name.startswith("smtp_") and self._syntax_available(getattr(self, name))
        )
        await self._push(reply.fill(commands=" ".join(commands)))

    def _syntax_available(self, method: Callable[..., Any]) -> bool:
        if not hasattr(method, "__smtp_syntax__"):
            return False
        when = getattr(method, "__smtp_syntax_when__", None)
        return bool(getattr(self, when)) if when else True

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str | None) -> None:
        if await self.check_auth_needed("VRFY"):
            return
        if not arg:
            await self._push(replies.VRFY_SYNTAX)
            return
        try:
            address, _ = parse_path(arg, local_part_limit=self.local_part_limit)
        except GrammarError:
            await self._push(replies.VRFY_BAD_ADDRESS.fill(address=arg))
            return
        status = await self._call_handler_hook("VRFY", address)
        await self._hook_or_default(
            status,
            replies.CANNOT_VRFY,
            "handle_VRFY",
        )

    def _path_and_params(
        self, keyword: str, arg: str | None, *, allow_null: bool
    ) -> tuple[str, list[str], list[str], dict[str, str | bool]]:
        """Parse ``FROM:<path> params`` / ``TO:<path> params``.

        Returns:
            ``(address, options, raw, params)``: the options upper-cased, and
            as sent (ENVID and ORCPT keep their case; a duplicate shows only
            there), and the upper-cased options by keyword.

        Raises:
            SMTPReplyError: the argument does not parse.
        """
        assert self.session is not None
        extended = self.session.extended_smtp
        if keyword == "FROM:":
            syntax_error = replies.MAIL_SYNTAX_ESMTP if extended else replies.MAIL_SYNTAX
        else:
            syntax_error = replies.RCPT_SYNTAX_ESMTP if extended else replies.RCPT_SYNTAX
        rest = strip_keyword(keyword, arg) if arg is not None else None
        if rest is None:
            raise SMTPReplyError(syntax_error)
        try:
            address, params = parse_path(
                rest, local_part_limit=self.local_part_limit, allow_null=allow_null
            )
        except GrammarError as error:
            raise SMTPReplyError(replies.known(error.reply)) from None
        if not address or (params and not extended):
            raise SMTPReplyError(syntax_error)
        if not params:
            return address, [], [], {}
        options = params.upper().split()
        parsed = parse_params(options)
        if parsed is None:
            raise SMTPReplyError(syntax_error)
        return address, options, params.split(), parsed

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        if not self._may_go_on() and (
            await self.check_helo_needed() or await self.check_auth_needed("MAIL")
        ):
            return
        assert self.envelope is not None
        address, options, raw, params = self._path_and_params("FROM:", arg, allow_null=True)
        if self.envelope.mail_from:
            raise SMTPReplyError(replies.NESTED_MAIL)
        self._check_mail_params(options, params)
        dsn = self._mail_dsn(raw)
        # Started here, not through _call_handler_hook: no coroutine when there
        # is no hook, or when it is a plain function.
        status = self._start_hook("MAIL", address, options)
        if type(status) is _Coroutine or inspect.isawaitable(status):
            status = await status
        if status is MISSING:
            self.envelope.mail_from = address
            self.envelope.mail_options.extend(options)
        if self.envelope.mail_from:  # accepted, here or by the hook
            self.envelope.dsn = dsn
        self._queue_status(status, replies.OK, "handle_MAIL")
        if self._write_paused:
            await self._drain()

    def _mail_dsn(self, raw: list[str]) -> MailDSN | None:
        """MAIL's RET and ENVID (None when DSN is off or neither was given).

        Raises:
            DSNError: a malformed or repeated DSN parameter (501 5.5.4).
        """
        if not self.dsn or not raw:
            return None
        found = parse_mail_dsn(raw)
        return found if found.ret is not None or found.envid is not None else None

    def _rcpt_dsn(self, options: list[str], raw: list[str]) -> RcptDSN:
        """RCPT's NOTIFY and ORCPT; every other RCPT parameter is refused.

        Raises:
            SMTPReplyError: a parameter other than NOTIFY and ORCPT (555), or
                a malformed or repeated one (a DSNError, 501 5.5.4).
        """
        if not options:
            return NO_RCPT_DSN
        if not self.dsn or any(o.split("=", 1)[0] not in RCPT_KEYWORDS for o in options):
            raise SMTPReplyError(replies.RCPT_PARAMETERS)
        return parse_rcpt_dsn(raw)

    def _check_mail_params(self, options: list[str], params: dict[str, str | bool]) -> None:
        """Validate MAIL's ESMTP parameters.

        ``params`` is ``options`` by keyword, as ``parse_params`` gives them; the
        checks take from it what they read.

        Raises:
            SMTPReplyError: a parameter is malformed, not allowed or unknown.
        """
        assert self.session is not None and self.envelope is not None
        if not params:
            # No parameters: what the checks below come to for none.
            if not self._decode_data:
                self.envelope.body_type = "7BIT"
            self.envelope.smtp_utf8 = False
            return
        if self.chunking and params.get("BODY") == "BINARYMIME":
            # RFC 3030 §3; decode_data or not, binary content stays bytes.
            self.envelope.body_type = str(params.pop("BODY"))
        elif not self._decode_data:
            body = params.pop("BODY", "7BIT")
            if body not in ("7BIT", "8BITMIME"):
                raise SMTPReplyError(replies.BAD_BODY)
            self.envelope.body_type = str(body)
        smtputf8 = params.pop("SMTPUTF8", False)
        if not isinstance(smtputf8, bool):
            raise SMTPReplyError(replies.SMTPUTF8_ARGUMENTS)
        if smtputf8 and not self.enable_SMTPUTF8:
            raise SMTPReplyError(replies.SMTPUTF8_DISABLED)
        self.envelope.smtp_utf8 = smtputf8
        size = params.pop("SIZE", None)
        if size is not None:
            if isinstance(size, bool) or not size.isdigit():
                raise SMTPReplyError(replies.MAIL_SYNTAX_ESMTP)
            if self.data_size_limit and int(size) > self.data_size_limit:
                raise SMTPReplyError(replies.SIZE_EXCEEDED)
        if self.dsn:
            for keyword in MAIL_KEYWORDS:  # read from the raw list by _mail_dsn
                params.pop(keyword, None)
        if params:
            raise SMTPReplyError(replies.MAIL_PARAMETERS)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        if not self._may_go_on() and (
            await self.check_helo_needed() or await self.check_auth_needed("RCPT")
        ):
            return
        assert self.envelope is not None
        if not self.envelope.mail_from:
            raise SMTPReplyError(replies.NEED_MAIL)
        address, options, raw, _ = self._path_and_params("TO:", arg, allow_null=False)
        dsn = self._rcpt_dsn(options, raw)
        if len(self.envelope.rcpt_tos) >= self.max_recipients:
            raise SMTPReplyError(replies.TOO_MANY_RECIPIENTS)
        status = self._start_hook("RCPT", address, options)
        if type(status) is _Coroutine or inspect.isawaitable(status):
            status = await status
        if status is MISSING:
            self.envelope.rcpt_tos.append(address)
            self.envelope.rcpt_options.extend(options)
        # rcpt_dsn stays parallel to rcpt_tos, also when the hook added the recipient.
        envelope = self.envelope
        envelope.rcpt_dsn.extend([dsn] * (len(envelope.rcpt_tos) - len(envelope.rcpt_dsn)))
        self._queue_status(status, replies.OK, "handle_RCPT")
        if self._write_paused:
            await self._drain()

    @syntax("RSET")
    async def smtp_RSET(self, arg: str | None) -> None:
        if arg:
            await self._push(replies.RSET_SYNTAX)
            return
        self._set_rset_state()
        if hasattr(self, "rset_hook"):
            warnings.warn(
                "Use handler.handle_RSET() instead of .rset_hook()",
                DeprecationWarning,
                stacklevel=2,
            )
            await self.rset_hook()
        status = await self._call_handler_hook("RSET")
        await self._hook_or_default(status, replies.OK, "handle_RSET")

    @syntax("DATA")
    async def smtp_DATA(self, arg: str | None) -> None:
        if not self._may_go_on() and (
            await self.check_helo_needed() or await self.check_auth_needed("DATA")
        ):
            return
        assert self.envelope is not None
        refusal = self._data_refusal()
        if refusal is not None:
            await self._push(refusal)
            return
        if not self.envelope.rcpt_tos:
            await self._push(replies.NEED_RCPT)
            return
        if arg:
            await self._push(replies.DATA_SYNTAX)
            return
        self._queue(replies.START_DATA.wire[self.enhanced_status_codes])
        if self._write_paused:
            await self._drain()
        recipients = len(self.envelope.rcpt_tos)
        try:
            status = await self._receive_data()
            if status is None:
                try:
                    status = await self._deliver()
                except Exception as error:
                    if isinstance(error, ConnectionError) and self._connection_gone():
                        raise
                    status = await self.handle_exception(error)
        finally:
            self._set_post_data_state()
        await self._send_data_replies(status, recipients)

    async def _send_data_replies(self, status: Any, recipients: int) -> None:
        """Send the reply to the end of data (LMTP sends one per recipient)."""
        if not isinstance(status, (str, bytes, Reply)):
            log.error("handle_DATA returned %r; expected a reply string", status)
            status = replies.INTERNAL_ERROR
        self._queue_hook_reply(status, "handle_DATA")
        if self._write_paused:
            await self._drain()

    async def _hook_or_default(self, status: Any, default: Reply, source: str) -> None:
        """Reply with what the hook ``source`` returned, or ``default`` without a hook."""
        self._queue_status(status, default, source)
        if self._write_paused:
            await self._drain()

    def _queue_status(self, status: Any, default: Reply, source: str) -> None:
        """The queueing half of :meth:`_hook_or_default` (the caller drains)."""
        if status is MISSING:
            self._queue(default.wire[self.enhanced_status_codes])
        else:
            self._queue_hook_reply(status, source)

    async def _receive_data(self) -> Reply | str | None:
        """Read the message into the envelope; return an error reply or None."""
        assert self.envelope is not None
        stream = self._hook("DATA_CHUNK")
        transfer = self._start_transfer(streaming=stream is not None)
        failure: Exception | None = None
        try:
            while True:
                # Chunks may pile up (even the end of data may arrive) while
                # the hook runs: hand over everything before looking at done.
                while (
                    stream is not None
                    and transfer.chunks
                    and transfer.error is None
                    and failure is None
                ):
                    failure = await self._stream_chunk(stream, transfer.take())
                if transfer.done:
                    break
                self._begin_transfer(transfer)
                await self._wait_for_input()
        except ConnectionError:
            if stream is not None:
                await self._data_abort("connection lost")
            raise
        finally:
            self._end_transfer()
            if self._observed is not None:
                self._observed.size = transfer.size
        if transfer.error is not None:
            if stream is not None:
                await self._data_abort(transfer.error)
            return transfer.error
        if failure is not None:
            await self._data_abort("the handler failed")
            return await self.handle_exception(failure)
        if stream is None:
            return self._set_content(transfer.take())
        return None

    def _start_transfer(self, *, streaming: bool) -> Transfer:
        """Make the message's transfer and give it what the client already sent."""
        now = self.loop.time()
        self._last_activity = now
        transfer = Transfer.for_data(
            self.data_size_limit, self.line_length_limit, streaming=streaming, now=now
        )
        if self._buf:
            end = transfer.feed(bytes(self._buf))
            if end < 0:
                self._buf.clear()
            else:
                del self._buf[:end]
        return transfer

    async def _stream_chunk(self, stream: Callable[..., Any], chunk: bytes) -> Exception | None:
        try:
            result = stream(self, self.session, self.envelope, chunk)
            if inspect.isawaitable(result):
                await result
        except Exception as error:
            if isinstance(error, ConnectionError) and self._connection_gone():
                raise
            return error
        finally:
            self._resume_reading()
        return None

    async def _data_abort(self, reason: str, envelope: Any = None) -> None:
        """Call ``handle_DATA_ABORT`` for ``envelope`` (by default the current one)."""
        hook = self._hook("DATA_ABORT")
        if hook is None:
            return
        try:
            result = hook(
                self, self.session, self.envelope if envelope is None else envelope, reason
            )
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("handle_DATA_ABORT raised")

    def _set_content(self, original: bytes) -> Reply | None:
        assert self.envelope is not None
        content: bytes | str = original
        if self._decode_data:
            if self.enable_SMTPUTF8:
                content = original.decode("utf-8", errors="surrogateescape")
            else:
                try:
                    content = original.decode("ascii")
                except UnicodeDecodeError:
                    return replies.DATA_STRICT_ASCII
        self.envelope.content = content
        self.envelope.original_content = original
        return None

    async def _deliver(self) -> Any:
        """Give the received message to the handler; return the DATA reply."""
        hook = self._hook("DATA")
        if hook is not None:
            status = hook(self, self.session, self.envelope)
            if type(status) is _Coroutine or inspect.isawaitable(status):
                status = await status
            return replies.OK if status is MISSING else status
        process = getattr(self.event_handler, "process_message", None)
        if process is None:
            return replies.OK
        warnings.warn(
            "Use handler.handle_DATA() instead of .process_message()",
            DeprecationWarning,
            stacklevel=2,
        )
        assert self.session is not None and self.envelope is not None
        envelope = self.envelope
        status = process(self.session.peer, envelope.mail_from, envelope.rcpt_tos, envelope.content)
        if inspect.isawaitable(status):
            status = await status
        return replies.OK if status is None else status

    async def smtp_EXPN(self, arg: str | None) -> None:
        await self._push(replies.EXPN_NOT_IMPLEMENTED)

    # ------------------------------------------------------------------
    # CHUNKING (RFC 3030): BDAT

    @syntax("BDAT <size> [LAST]", when="chunking")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """Read one chunk of the message; after the ``LAST`` one, deliver it.

        Every BDAT gets exactly one reply, sent after its octets were read,
        whether the chunk was accepted or not: a client that pipelines its
        chunks stays in step.
        """
        if not self.chunking:
            self._unknown("BDAT")
            return
        parsed = parse_bdat(arg)
        if parsed is None:
            # With no size there is no telling where the chunk ends.
            await self._push(bdat.BAD_SIZE)
            self._close()
            return
        size, last = parsed if isinstance(parsed, tuple) else (parsed, None)
        refusal, self._policy_refusal = self._policy_refusal, None
        if refusal is None:
            refusal = bdat.BAD_SYNTAX if last is None else self._bdat_refusal()
        if refusal is not None:
            await self._read_chunk(ChunkDecoder(size, keep=False), None)
            if last and self._bdat is not None and self._bdat.envelope is self.envelope:
                self._bdat = None
                self._set_post_data_state()
            await self._push(refusal)
            return
        await self._bdat_chunk(size, bool(last))

    def _data_refusal(self) -> Reply | None:
        """RFC 3030: no DATA once BDAT started the message, nor for a binary body."""
        message = self._bdat
        if message is not None and message.envelope is self.envelope:
            return bdat.DATA_AFTER_BDAT
        if getattr(self.envelope, "body_type", "7BIT") == "BINARYMIME":
            return bdat.BINARY_NEEDS_BDAT
        return None

    def _check_policy(self, verb: str) -> None:
        try:
            super()._check_policy(verb)
        except SMTPReplyError as refusal:
            if verb != "BDAT" or not self.chunking or refusal.reply.code == 421:
                raise
            # The chunk's octets follow the line whatever the reply: smtp_BDAT
            # reads them, then refuses, so they are never taken for commands.
            self._policy_refusal = refusal.reply

    def _bdat_refusal(self) -> Reply | None:
        """Why this BDAT may not add to the message, or None when it may."""
        assert self.session is not None and self.envelope is not None
        if not self.session.host_name:
            return replies.SEND_HELO_FIRST.fill(verb=self._hello_verb)
        if self._auth_required and not self.session.authenticated:
            return replies.AUTH_REQUIRED
        if not self.envelope.mail_from:
            return replies.NEED_MAIL
        if not self.envelope.rcpt_tos:
            return bdat.NO_VALID_RECIPIENTS
        message = self._bdat
        if message is not None and message.envelope is self.envelope and message.failed:
            return bdat.EARLIER_CHUNK_FAILED
        return None

    def _set_rset_state(self) -> None:
        self._abandon_chunks("transaction reset")
        super()._set_rset_state()

    def connection_lost(self, exc: Exception | None) -> None:
        # A BDAT command that is running tells the handler itself when its
        # read fails; between two chunks, nothing else would.
        if self.transport is not None and not self._running:
            self._abandon_chunks("connection lost")
        super().connection_lost(exc)

    def _abandon_chunks(self, reason: str) -> None:
        """Tell a streaming handler that the BDAT message it had chunks of will not end.

        Called when the transaction is reset (RSET, HELO/EHLO, STARTTLS) or
        the client goes away between two chunks. A message whose chunk was
        refused was already aborted; a message kept in memory is just dropped.
        """
        message = self._bdat
        if message is None:
            return
        self._bdat = None
        if message.envelope is not self.envelope or message.failed is not None:
            return
        if self._hook("DATA_CHUNK") is None:
            return
        task = self.loop.create_task(self._data_abort(reason, message.envelope))
        _ABORTS.add(task)  # held until done: the loop keeps only a weak reference
        task.add_done_callback(_ABORTS.discard)

    def _chunked_message(self) -> ChunkedMessage:
        """The message the chunks of this transaction make up (started on the first)."""
        message = self._bdat
        if message is None or message.envelope is not self.envelope:
            message = self._bdat = ChunkedMessage(self.envelope)
        return message

    async def _bdat_chunk(self, size: int, last: bool) -> None:
        """Read an accepted chunk, then reply (and deliver after the last)."""
        message = self._chunked_message()
        stream = self._hook("DATA_CHUNK")
        decoder = ChunkDecoder(size, size_before=message.size, size_limit=self.data_size_limit)
        failure = await self._read_chunk(decoder, stream, message)
        message.size = decoder.size
        if decoder.error is not None or failure is not None:
            message.failed = decoder.error or replies.INTERNAL_ERROR.format()
            message.parts.clear()
            if stream is not None:
                await self._data_abort(decoder.error or "the handler failed")
        if not last:
            if failure is not None:
                await self._push_hook_reply(await self.handle_exception(failure), "BDAT")
            elif message.failed is not None:
                await self._push(message.failed)
            else:
                await self._push(bdat.CHUNK_RECEIVED.fill(size=size))
            return
        await self._bdat_last(message, stream is not None, failure)

    async def _read_chunk(
        self,
        decoder: ChunkDecoder,
        stream: Callable[..., Any] | None,
        message: ChunkedMessage | None = None,
    ) -> Exception | None:
        """Feed the chunk's octets through a transfer: from the buffer first, then the client.

        Returns the exception the ``handle_DATA_CHUNK`` hook raised, if any
        (later octets of the chunk are still read, and dropped).
        """
        now = self.loop.time()
        self._last_activity = now
        transfer = Transfer(decoder, streaming=stream is not None, now=now)
        transfer.restart_window(now)
        self._take_buffered(transfer, decoder.remaining)
        failure: Exception | None = None
        try:
            while True:
                while transfer.chunks:
                    if failure is not None or transfer.error is not None:
                        transfer.take()
                    elif stream is not None:
                        failure = await self._stream_chunk(stream, transfer.take())
                    elif message is not None:
                        message.parts.append(transfer.take())
                if transfer.done:
                    return failure
                self._begin_transfer(transfer)
                await self._wait_for_input()
        except ConnectionError:
            if stream is not None and message is not None:
                await self._data_abort("connection lost")
            raise
        finally:
            self._end_transfer()

    def _take_buffered(self, transfer: Transfer, length: int) -> None:
        """Give the transfer the chunk's ``length`` octets, those already in the buffer.

        Only the chunk's part of the buffer is copied: a client that pipelines
        many small messages must not cost a copy of all of them per chunk.
        """
        buf = self._buf
        if transfer.done or not buf:
            return
        end = transfer.feed(bytes(buf[:length]))
        del buf[: len(buf) if end < 0 else end]

    async def _bdat_last(
        self, message: ChunkedMessage, streamed: bool, failure: Exception | None
    ) -> None:
        """End the message: deliver it (or refuse it) and end the transaction."""
        assert self.envelope is not None
        recipients = len(self.envelope.rcpt_tos)
        status: Any
        try:
            if failure is not None:
                status = await self.handle_exception(failure)
            elif message.failed is not None:
                status = message.failed
            else:
                status = None if streamed else self._set_chunked_content(message.content())
                if status is None:
                    status = await self._deliver_chunked()
        finally:
            self._bdat = None
            self._set_post_data_state()
        await self._send_data_replies(status, recipients)

    def _set_chunked_content(self, original: bytes) -> Reply | None:
        """Set the envelope's content; binary content stays bytes (RFC 3030 §3)."""
        assert self.envelope is not None
        if getattr(self.envelope, "body_type", "7BIT") == "BINARYMIME":
            self.envelope.content = self.envelope.original_content = original
            return None
        return self._set_content(original)

    async def _deliver_chunked(self) -> Any:
        try:
            return await self._deliver()
        except Exception as error:
            if isinstance(error, ConnectionError) and self._connection_gone():
                raise
            return await self.handle_exception(error)


@functools.lru_cache(maxsize=256)
def _ehlo_param_count(func: Callable[..., Any], bound: bool) -> int:
    """The parameters of a ``handle_EHLO`` (without ``self``); TypeError if unsupported."""
    signature = inspect.signature(func)
    count = len(signature.parameters) - bound
    if count not in (4, 5):
        name = getattr(func, "__qualname__", "handle_EHLO")
        raise TypeError(
            f"Unsupported handle_EHLO signature {name}{signature}: "
            "expected handle_EHLO(self, server, session, envelope, hostname, responses) "
            "or the deprecated handle_EHLO(self, server, session, envelope, hostname)"
        )
    return count


@functools.lru_cache(maxsize=256)
def _ehlo_hook_version_of(func: Callable[..., Any], bound: bool) -> int:
    count = _ehlo_param_count(func, bound)
    if count == 4:
        warnings.warn(
            "Use the 5-argument handle_EHLO(server, session, envelope, hostname, responses) hook; "
            "the 4-argument form is deprecated",
            DeprecationWarning,
            stacklevel=4,
        )
    return count


def _ehlo_func(hook: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    func = getattr(hook, "__func__", None)
    return (hook, False) if func is None else (func, True)


def check_ehlo_hook(handler: Any) -> None:
    """Refuse a handler whose ``handle_EHLO`` takes neither supported signature.

    Raises:
        TypeError: naming the hook, its signature and the expected ones.
    """
    hook = getattr(handler, "handle_EHLO", None)
    if hook is not None:
        _ehlo_param_count(*_ehlo_func(hook))


def _ehlo_hook_version(hook: Callable[..., Any]) -> int:
    return _ehlo_hook_version_of(*_ehlo_func(hook))
