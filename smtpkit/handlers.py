"""Ready-made handlers: Sink, Debugging, Message, AsyncMessage, Mailbox and Proxy.

A handler is any object whose ``handle_<VERB>`` coroutines the SMTP class calls
during a session. The classes here cover the common jobs: discard mail, print
it, hand it over as an :class:`email.message.Message`, store it durably in a
Maildir, or relay it to another SMTP server.

None of them reads command-line arguments itself. ``from_cli`` receives an
already-built parser (anything with an ``error(message)`` method that does not
return, such as :class:`argparse.ArgumentParser`) and the positional strings.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.message
import email.policy
import io
import itertools
import logging
import mailbox
import os
import secrets
import smtplib
import socket
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from email.generator import BytesGenerator
from email.header import Header
from email.message import Message as EmailMessage
from email.parser import BytesParser, Parser
from email.policy import Policy
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TextIO, TypeVar

from typing_extensions import Self

if TYPE_CHECKING:
    from smtpkit.smtp import SMTP, Envelope, Session

__all__ = [
    "AsyncMessage",
    "CLIParser",
    "Debugging",
    "Mailbox",
    "Message",
    "MessageBase",
    "Proxy",
    "Sink",
]

log = logging.getLogger("smtpkit.handlers")

_T = TypeVar("_T")

# The reply for a message that could not be stored or relayed. RFC 5321
# §4.2.3 gives 451 as "local error in processing"; the client keeps the
# message and tries again later. No exception text ever goes into it.
_LOCAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"


class CLIParser(Protocol):
    """What ``from_cli`` needs from a command-line parser.

    :class:`argparse.ArgumentParser` fits; so does any object whose ``error``
    method reports the message and does not return.
    """

    def error(self, message: str) -> NoReturn:
        """Report a usage error and stop."""


async def _in_worker_thread(func: Callable[..., _T], *args: Any) -> _T:
    """Run a blocking call in the loop's default executor and await it.

    Handlers use this for disk and network work so the event loop keeps
    serving other sessions meanwhile.
    """
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, func, *args)


def _one_line(text: str) -> str:
    """Return ``text`` with CR and LF replaced, safe to use as a header value."""
    return text.replace("\r", " ").replace("\n", " ")


def _header_text(text: str) -> str:
    """Return ``text`` as a one-line header value that is pure ASCII.

    Non-ASCII text (an SMTPUTF8 address) becomes RFC 2047 encoded-words,
    which the ``email`` and ``mailbox`` modules decode back to the same text;
    raw UTF-8 bytes in a header would come back garbled under their default
    (compat32) reading. The words stay on one line, separated by spaces, which
    a decoder drops between adjacent encoded-words.
    """
    text = _one_line(text)
    if text.isascii():
        return text
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    folded = Header(text, "utf-8").encode(linesep="\n")
    return " ".join(part.strip() for part in folded.split("\n"))


def _peer_text(peer: object, sockname: object = None) -> str:
    """Return how X-Peer names the client: ``host:port``, ``[v6]:port`` or a socket path.

    Args:
        peer: ``session.peer``, as the transport reported it.
        sockname: the server side's socket name, used when ``peer`` is empty
            (a client on a Unix socket has no name; the socket's path is the
            useful fact).
    """
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = str(peer[0]), peer[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    for name in (peer, sockname):
        if isinstance(name, bytes):
            name = os.fsdecode(name)
        if isinstance(name, str) and name:
            # A Linux abstract socket name starts with NUL; show it as "@".
            return name.replace("\0", "@")
    return "unknown"


def _sockname(server: object) -> object:
    """The server side's socket name of the connection ``server`` serves, if any."""
    transport = getattr(server, "transport", None)
    get_extra_info = getattr(transport, "get_extra_info", None)
    return get_extra_info("sockname") if get_extra_info is not None else None


def _parsing_policy(message_class: type[EmailMessage] | None) -> Policy:
    """The ``email`` policy matching the class a parser builds.

    :class:`email.message.EmailMessage` (and its subclasses) is meant for
    :data:`email.policy.default`, which decodes RFC 2047 headers; the legacy
    :class:`email.message.Message` keeps :data:`email.policy.compat32`.
    """
    if message_class is not None and issubclass(message_class, email.message.EmailMessage):
        return email.policy.default
    return email.policy.compat32


# The server side's socket name while a handler builds its X- headers in a
# method whose signature has no server (prepare_message(session, envelope)):
# it lets X-Peer name the socket path for a client on a Unix socket.
_SOCKNAME: ContextVar[object] = ContextVar("smtpkit_handlers_sockname", default=None)


@contextlib.contextmanager
def _socket_of(server: object) -> Iterator[None]:
    """Make the socket name of ``server``'s connection known to X-Peer inside the block."""
    token = _SOCKNAME.set(_sockname(server))
    try:
        yield
    finally:
        _SOCKNAME.reset(token)


# ---------------------------------------------------------------------------
# Sink and Debugging


class Sink:
    """Accept every message and discard it: the "no-op" handler."""

    @classmethod
    def from_cli(cls, parser: CLIParser, *args: str) -> Self:
        """Build a Sink from command-line arguments.

        Args:
            parser: the parser whose ``error`` reports bad usage.
            *args: positional arguments; a Sink accepts none.

        Returns:
            A new Sink.
        """
        if args:
            parser.error(f"Sink handler does not accept arguments, got {list(args)!r}")
        return cls()


class Debugging:
    """Print every received message to a text stream.

    Args:
        stream: where to print; ``sys.stdout`` when not given.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream: TextIO = sys.stdout if stream is None else stream

    @classmethod
    def from_cli(cls, parser: CLIParser, *args: str) -> Self:
        """Build a Debugging handler from command-line arguments.

        Args:
            parser: the parser whose ``error`` reports bad usage.
            *args: nothing (stdout), ``"stdout"`` or ``"stderr"``.

        Returns:
            A handler printing to the chosen stream.
        """
        streams = {"stdout": sys.stdout, "stderr": sys.stderr}
        if not args:
            return cls()
        if len(args) > 1 or args[0] not in streams:
            parser.error(f"Debugging usage: [stdout|stderr], got {list(args)!r}")
        return cls(streams[args[0]])

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Print the envelope options and the message, then accept it.

        Returns:
            ``"250 OK"``.
        """
        self._print("---------- MESSAGE FOLLOWS ----------")
        self._print_options(envelope)
        content = envelope.content if envelope.content is not None else envelope.original_content
        peer = _peer_text(session.peer, _sockname(server))
        self._print_content(peer, content if content is not None else b"")
        self._print("------------ END MESSAGE ------------")
        return "250 OK"

    def _print(self, *values: object) -> None:
        print(*values, file=self.stream)

    def _print_options(self, envelope: Envelope) -> None:
        printed = False
        if envelope.mail_options:
            self._print("mail options:", envelope.mail_options)
            printed = True
        if any(envelope.rcpt_options):
            self._print("rcpt options:", envelope.rcpt_options)
            printed = True
        if printed:
            self._print()

    def _print_content(self, peer: str, content: bytes | str) -> None:
        # The X-Peer line goes where the header block ends, so the printout
        # reads like the message a mail client would show.
        in_headers = True
        for raw_line in content.splitlines():
            line = raw_line.decode("utf-8", "replace") if isinstance(raw_line, bytes) else raw_line
            if in_headers and not line:
                self._print(f"X-Peer: {peer}")
                in_headers = False
            self._print(line)


# ---------------------------------------------------------------------------
# Message and AsyncMessage


class MessageBase(ABC):
    """Common part of :class:`Message` and :class:`AsyncMessage`.

    Args:
        message_class: the class the parser builds; ``email.message.Message``
            when not given. The parser uses :data:`email.policy.default` when
            it is :class:`email.message.EmailMessage` or a subclass (headers
            such as an encoded ``Subject`` come out decoded), and
            :data:`email.policy.compat32` otherwise.
    """

    def __init__(self, message_class: type[EmailMessage] | None = None) -> None:
        self.message_class = message_class

    def prepare_message(self, session: Session, envelope: Envelope) -> EmailMessage:
        """Parse ``envelope.content`` and add the X-Peer, X-MailFrom and X-RcptTo headers.

        Args:
            session: the current session (its ``peer`` becomes X-Peer, written
                ``host:port``, ``[IPv6]:port`` or the socket path).
            envelope: the finished transaction.

        Returns:
            The parsed message.

        Raises:
            TypeError: ``envelope.content`` is neither ``bytes`` nor ``str``.
        """
        data = envelope.content
        policy = _parsing_policy(self.message_class)
        message: EmailMessage
        if isinstance(data, (bytes, bytearray)):
            message = BytesParser(self.message_class, policy=policy).parsebytes(bytes(data))
        elif isinstance(data, str):
            message = Parser(self.message_class, policy=policy).parsestr(data)
        else:
            raise TypeError(f"envelope.content: expected str or bytes, got {type(data).__name__}")
        message["X-Peer"] = _peer_text(session.peer, _SOCKNAME.get())
        message["X-MailFrom"] = envelope.mail_from or ""
        message["X-RcptTo"] = ", ".join(envelope.rcpt_tos)
        return message

    def _prepare(self, server: SMTP, session: Session, envelope: Envelope) -> EmailMessage:
        """Call :meth:`prepare_message` with the connection's socket name at hand."""
        with _socket_of(server):
            return self.prepare_message(session, envelope)

    @abstractmethod
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Handle the end of DATA; see the subclasses."""


class Message(MessageBase):
    """Abstract handler passing each message to a synchronous ``handle_message``.

    ``prepare_message`` and ``handle_message`` run on the event loop, so
    ``handle_message`` should be quick; use :class:`AsyncMessage` for work
    that waits.
    """

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Parse the message, call ``handle_message`` and accept it.

        Returns:
            ``"250 OK"``.
        """
        self.handle_message(self._prepare(server, session, envelope))
        return "250 OK"

    @abstractmethod
    def handle_message(self, message: EmailMessage) -> None:
        """Receive one parsed message.

        Args:
            message: the message with its X-Peer, X-MailFrom and X-RcptTo headers.
        """


class AsyncMessage(MessageBase):
    """Abstract handler passing each message to a coroutine ``handle_message``.

    Args:
        message_class: the class the parser builds.
        loop: kept on ``self.loop`` for code written against older APIs; the
            handler always runs on the loop that serves the session.
    """

    def __init__(
        self,
        message_class: type[EmailMessage] | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(message_class)
        self.loop = loop

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Parse the message, await ``handle_message`` and accept it.

        Returns:
            ``"250 OK"``.
        """
        await self.handle_message(self._prepare(server, session, envelope))
        return "250 OK"

    @abstractmethod
    async def handle_message(self, message: EmailMessage) -> None:
        """Receive one parsed message.

        Args:
            message: the message with its X-Peer, X-MailFrom and X-RcptTo headers.
        """


# ---------------------------------------------------------------------------
# Mailbox: durable Maildir delivery


class _MaildirNames:
    """Unique file names for one Maildir, following the maildir(5) convention."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        # "/" and ":" cannot appear in the host part (maildir(5)).
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072")

    def next(self) -> str:
        """Return a name no other delivery from this process will use."""
        now = time.time()
        seconds, micros = int(now), int((now % 1) * 1_000_000)
        unique = f"M{micros}P{os.getpid()}Q{next(self._counter)}R{secrets.token_hex(4)}"
        return f"{seconds}.{unique}.{self._host}"


def _fsync_directory(path: Path) -> None:
    """Flush a directory entry change (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_maildir(path: Path) -> None:
    """Create a Maildir and its ``tmp``, ``new`` and ``cur`` folders, parents included.

    Raises:
        NotADirectoryError: ``path`` (or one of its parents) exists and is not a folder.
        OSError: the folders cannot be created (the message names the path).
    """
    try:
        for sub in ("tmp", "new", "cur"):
            # mode applies to the folders created here; parents get the umask.
            (path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        candidates = [path / "tmp", path / "new", path / "cur", path, *path.parents]
        blocking = next((c for c in candidates if c.exists() and not c.is_dir()), path)
        raise NotADirectoryError(
            f"Mailbox mail_dir {str(path)!r}: expected a folder (or nothing) there, "
            f"but {str(blocking)!r} is a file"
        ) from error


def _remove_stale_files(folder: Path, max_age: float) -> int:
    """Delete the files in ``folder`` last modified more than ``max_age`` seconds ago.

    Returns:
        How many were deleted.
    """
    cutoff = time.time() - max_age
    removed = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                stale = entry.is_file(follow_symlinks=False) and (
                    entry.stat(follow_symlinks=False).st_mtime < cutoff
                )
                if stale:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                continue  # another process cleaned it first
    return removed


class _MaildirDelivery:
    """One message on its way into a Maildir.

    Bytes are buffered and written to ``tmp/<name>``; :meth:`commit` makes the
    file durable and only then renames it into ``new/``, so a reader never
    sees half a message and an accepted message survives a crash. Line
    endings become LF, as Maildir readers expect; a CR at the end of one chunk
    is held back until the next chunk shows whether an LF follows.

    :meth:`feed` runs on the event loop; the other methods do disk I/O and run
    in a worker thread.
    """

    flush_threshold = 256 * 1024

    def __init__(self, maildir: Path, name: str, header: bytes) -> None:
        self._tmp_path = maildir / "tmp" / name
        self._new_dir = maildir / "new"
        self._name = name
        self._file: io.BufferedWriter | None = None
        self._pending: list[bytes] = [header]
        self._pending_size = len(header)
        self._carry = b""
        self.failed = False

    def feed(self, chunk: bytes) -> bool:
        """Buffer a chunk; return whether the buffer should now be flushed."""
        data = self._carry + chunk
        self._carry = b"\r" if data.endswith(b"\r") else b""
        if self._carry:
            data = data[:-1]
        data = data.replace(b"\r\n", b"\n")
        self._pending.append(data)
        self._pending_size += len(data)
        return self._pending_size >= self.flush_threshold

    def flush(self) -> None:
        """Write the buffered bytes to the tmp file (worker thread)."""
        if self._file is None:
            fd = os.open(self._tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file = open(fd, "wb")  # noqa: SIM115 - closed by commit() or discard()
        self._file.write(b"".join(self._pending))
        self._pending.clear()
        self._pending_size = 0

    def commit(self) -> Path:
        """Make the message durable in ``new/`` and return its path (worker thread)."""
        self._pending.append(self._carry)
        self._carry = b""
        self.flush()
        assert self._file is not None  # flush() opened it
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        new_path = self._new_dir / self._name
        os.rename(self._tmp_path, new_path)
        _fsync_directory(self._new_dir)
        return new_path

    def discard(self) -> None:
        """Close and delete the tmp file, if any (worker thread)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_path)


class Mailbox(Message):
    """Store each message durably in a Maildir.

    The message is written to ``tmp/``, flushed and fsync'ed, renamed into
    ``new/`` and the ``new/`` directory is fsync'ed before the client gets its
    ``250``. All disk work runs in a worker thread. The handler implements the
    streaming hooks, so the message goes to disk as it arrives and never sits
    in memory whole; an aborted transfer leaves nothing behind.

    Each stored message starts with ``X-Peer``, ``X-MailFrom`` and ``X-RcptTo``
    headers, followed by the message as received (with LF line endings), or by
    what :meth:`message_bytes` returns when it returns bytes.

    Files a crash left in ``tmp/`` are deleted once they are older than
    :attr:`tmp_max_age` (36 hours, the Maildir convention): when the handler
    is created, and then after a stored message at most once per
    :attr:`tmp_sweep_interval`.

    Args:
        mail_dir: the Maildir; it, its parents and its ``tmp``, ``new`` and
            ``cur`` folders are created when missing.
        message_class: the message class used by :meth:`handle_message`.

    Raises:
        NotADirectoryError: ``mail_dir`` or one of its parents is a file.
        OSError: the folders cannot be created.
    """

    #: Seconds after which a file in ``tmp/`` counts as left by a crash.
    tmp_max_age: float = 36 * 3600.0
    #: Least number of seconds between two clean-ups of ``tmp/``.
    tmp_sweep_interval: float = 3600.0

    def __init__(
        self,
        mail_dir: str | os.PathLike[str],
        message_class: type[EmailMessage] | None = None,
    ) -> None:
        self._path = Path(mail_dir)
        _create_maildir(self._path)
        self.mailbox = mailbox.Maildir(mail_dir)
        self.mail_dir = mail_dir
        super().__init__(message_class)
        self._names = _MaildirNames()
        # Keyed by id(envelope); the envelope itself is kept in the value so
        # its id cannot be reused while the delivery is open.
        self._open: dict[int, tuple[Envelope, _MaildirDelivery]] = {}
        self._sweep_lock = threading.Lock()
        self._next_sweep = time.monotonic() + self.tmp_sweep_interval
        self._sweep_tmp()

    @classmethod
    def from_cli(cls, parser: CLIParser, *args: str) -> Self:
        """Build a Mailbox from command-line arguments.

        Args:
            parser: the parser whose ``error`` reports bad usage.
            *args: exactly one argument, the Maildir path.

        Returns:
            A Mailbox storing into that directory.
        """
        if len(args) != 1:
            parser.error(
                f"Mailbox handler needs exactly one argument, the maildir; got {list(args)!r}"
            )
        return cls(args[0])

    def reset(self) -> None:
        """Delete every message from the Maildir."""
        self.mailbox.clear()

    def handle_message(self, message: EmailMessage) -> None:
        """Store one parsed message durably (blocking; safe in a worker thread).

        Args:
            message: the message to store, written as-is.
        """
        buffer = io.BytesIO()
        BytesGenerator(buffer, mangle_from_=False, maxheaderlen=0).flatten(message, linesep="\n")
        delivery = _MaildirDelivery(self._path, self._names.next(), b"")
        delivery.feed(buffer.getvalue())
        self._commit_or_discard(delivery)

    def message_bytes(self, envelope: Envelope) -> bytes | None:
        """Return the message to store instead of the one received, or None.

        Called by :meth:`handle_DATA` on the event loop, before anything is
        made durable. Override it to store a changed message; the ``X-``
        headers are still written above what it returns.

        The default returns ``envelope.content`` when it is set (encoded as
        UTF-8 when it is a ``str``), so a subclass that sets or edits
        ``envelope.content`` before calling ``super().handle_DATA()`` has its
        change stored; ``envelope.original_content`` is never preferred to it.
        While the message streams (the default), ``envelope.content`` is None
        at that point and the bytes received are stored.

        Args:
            envelope: the finished transaction.

        Returns:
            The message bytes (CRLF or LF line endings), or None to store the
            message as received.
        """
        content = envelope.content
        if content is None:
            return None
        if isinstance(content, str):
            return content.encode("utf-8", "surrogateescape")
        return bytes(content)

    async def handle_DATA_CHUNK(
        self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        """Append one piece of the message to its tmp file.

        Args:
            chunk: decoded, dot-unstuffed message bytes.
        """
        delivery = self._delivery_for(server, session, envelope)
        if delivery.failed or not delivery.feed(chunk):
            return
        try:
            await _in_worker_thread(delivery.flush)
        except OSError:
            # The rest of the transfer is read and dropped; handle_DATA then
            # answers 451 so the client keeps the message.
            log.exception("Mailbox: could not write a message to %s", self.mail_dir)
            delivery.failed = True
            await _in_worker_thread(delivery.discard)

    async def handle_DATA_ABORT(
        self, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        """Forget a transfer that was cut off and delete its tmp file.

        Args:
            reason: why the transfer stopped (logged).
        """
        entry = self._open.pop(id(envelope), None)
        if entry is not None:
            log.info("Mailbox: discarding a partial message (%s)", reason)
            await _in_worker_thread(entry[1].discard)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Make the message durable in ``new/``, then accept it.

        Stores what :meth:`message_bytes` returns when it returns bytes, and
        otherwise the message as received.

        Returns:
            ``"250 OK"`` once the message is on disk, or a ``451`` reply if it
            could not be stored (the details go to the log only).
        """
        entry = self._open.pop(id(envelope), None)
        streamed = entry[1] if entry is not None and entry[0] is envelope else None
        if streamed is not None and streamed.failed:
            return _LOCAL_ERROR
        try:
            delivery = await self._final_delivery(server, session, envelope, streamed)
            await _in_worker_thread(self._commit_or_discard, delivery)
        except Exception:
            log.exception("Mailbox: could not store a message in %s", self.mail_dir)
            return _LOCAL_ERROR
        return "250 OK"

    async def _final_delivery(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        streamed: _MaildirDelivery | None,
    ) -> _MaildirDelivery:
        """The delivery to commit: the streamed one, or one holding message_bytes()."""
        try:
            replacement = self.message_bytes(envelope)
        except BaseException:
            if streamed is not None:
                await _in_worker_thread(streamed.discard)
            raise
        if streamed is not None and replacement is None:
            return streamed
        if streamed is not None:
            await _in_worker_thread(streamed.discard)
        # No chunks came (an empty message, or a server that fills
        # envelope.content instead of streaming), or the message was changed.
        with _socket_of(server):
            delivery = self._new_delivery(session, envelope)
        delivery.feed(replacement if replacement is not None else b"")
        return delivery

    def _delivery_for(self, server: SMTP, session: Session, envelope: Envelope) -> _MaildirDelivery:
        entry = self._open.get(id(envelope))
        if entry is None or entry[0] is not envelope:
            with _socket_of(server):
                entry = (envelope, self._new_delivery(session, envelope))
            self._open[id(envelope)] = entry
        return entry[1]

    def _new_delivery(self, session: Session, envelope: Envelope) -> _MaildirDelivery:
        """A delivery to a new tmp file, its X- headers already buffered."""
        peer = _peer_text(session.peer, _SOCKNAME.get())
        recipients = ", ".join(_header_text(rcpt) for rcpt in envelope.rcpt_tos)
        headers = (
            f"X-Peer: {_header_text(peer)}\n"
            f"X-MailFrom: {_header_text(envelope.mail_from or '')}\n"
            f"X-RcptTo: {recipients}\n"
        )
        return _MaildirDelivery(self._path, self._names.next(), headers.encode("ascii"))

    def _commit_or_discard(self, delivery: _MaildirDelivery) -> None:
        """Commit ``delivery`` (worker thread), then clean ``tmp/`` if it is time."""
        try:
            delivery.commit()
        except BaseException:
            delivery.discard()
            raise
        self._sweep_tmp_if_due()

    def _sweep_tmp_if_due(self) -> None:
        now = time.monotonic()
        with self._sweep_lock:
            if now < self._next_sweep:
                return
            self._next_sweep = now + self.tmp_sweep_interval
        self._sweep_tmp()

    def _sweep_tmp(self) -> None:
        """Delete the files a crash left in ``tmp/``; log how many (never raises)."""
        tmp = self._path / "tmp"
        try:
            removed = _remove_stale_files(tmp, self.tmp_max_age)
        except OSError:
            log.warning("Mailbox: could not clean %s", tmp, exc_info=True)
            return
        if removed:
            log.info(
                "Mailbox: removed %d file(s) older than %g hours from %s (left by a crash)",
                removed,
                self.tmp_max_age / 3600,
                tmp,
            )


# ---------------------------------------------------------------------------
# Proxy: relay to another SMTP server


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
