"""`Mailbox`: durable Maildir delivery."""

from __future__ import annotations

import contextlib
import io
import itertools
import mailbox
import os
import secrets
import socket
import threading
import time
from email.generator import BytesGenerator
from email.message import Message as EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from typing_extensions import Self

from ._common import _LOCAL_ERROR, CLIParser, _in_worker_thread, log
from ._headers import (
    _SERVER,
    _SOCKNAME,
    _header_text,
    _peer_text,
    _received_text,
    _socket_of,
    _wants_received,
)
from ._message import Message

if TYPE_CHECKING:
    from smtpkit.smtp import SMTP, Envelope, Session


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

    def commit(self, committer: _MaildirCommitter) -> Path:
        """Make the message durable in ``new/`` and return its path (worker thread).

        Args:
            committer: the Maildir's committer, which syncs the data, renames
                the file and shares the sync of ``new/`` with other messages.
        """
        self._pending.append(self._carry)
        self._carry = b""
        self.flush()
        assert self._file is not None  # flush() opened it
        committer.sync_file(self._file, self._tmp_path)
        self._file.close()
        return committer.publish(self._tmp_path, self._new_dir / self._name)

    def discard(self) -> None:
        """Close and delete the tmp file, if any (worker thread)."""
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp_path)


class _MaildirCommitter:
    """Group commit for one Maildir: one fsync of ``new/`` covers many renames.

    Each message's data is synced by its own worker thread, so those syncs
    overlap. After its rename a message needs a sync of ``new/`` that *started*
    after the rename; one such sync covers every rename finished before it
    began. So the first message to wait runs the sync while the others wait;
    the renames that finished before it started are durable when it ends,
    and the later ones wait for the next sync, run by one of them.

    The three disk steps are methods, so a subclass can watch or change them.
    All methods block and run in worker threads.
    """

    def __init__(self, new_dir: Path) -> None:
        self.new_dir = new_dir
        self._cond = threading.Condition()
        self._renamed = 0  # renames finished so far; each one's number is its ticket
        self._synced = 0  # the last ticket a finished sync of new/ covers
        self._syncing = False

    def sync_file(self, file: io.BufferedWriter, path: Path) -> None:
        """Write ``file``'s buffer and fsync it: the message's data is on disk.

        Args:
            file: the open message file.
            path: where it is (in ``tmp/``).
        """
        file.flush()
        os.fsync(file.fileno())

    def rename(self, tmp_path: Path, new_path: Path) -> None:
        """Move a complete message into ``new/`` (atomic, not yet durable)."""
        os.rename(tmp_path, new_path)

    def sync_directory(self, path: Path) -> None:
        """Fsync the directory ``path``: the renames into it are on disk."""
        _fsync_directory(path)

    def publish(self, tmp_path: Path, new_path: Path) -> Path:
        """Rename a synced message into ``new/``; return once the rename is durable.

        Raises:
            OSError: the rename or the sync of ``new/`` failed.
        """
        self.rename(tmp_path, new_path)
        with self._cond:
            self._renamed += 1
            ticket = self._renamed
            while self._synced < ticket:
                if self._syncing:
                    self._cond.wait()
                else:
                    self._sync_for_waiters()
        return new_path

    def _sync_for_waiters(self) -> None:
        """Sync ``new/`` for every rename finished so far (entered and left with the lock)."""
        self._syncing = True
        covered = self._renamed
        self._cond.release()
        done = False
        try:
            self.sync_directory(self.new_dir)
            done = True
        finally:
            self._cond.acquire()
            self._syncing = False
            if done:
                self._synced = max(self._synced, covered)
            # On failure the waiters wake too, and one of them tries again.
            self._cond.notify_all()


class Mailbox(Message):
    """Store each message durably in a Maildir.

    The message is written to ``tmp/``, flushed and fsync'ed, renamed into
    ``new/`` and the ``new/`` directory is fsync'ed before the client gets its
    ``250``. Messages stored at the same time share that last fsync (group
    commit): one fsync of ``new/`` covers every rename that finished before it
    began. All disk work runs in worker threads. The handler implements the
    streaming hooks, so the message goes to disk as it arrives and never sits
    in memory whole; an aborted transfer leaves nothing behind.

    Each stored message starts with a ``Received:`` trace field (RFC 5321
    §4.4; its ``id`` is the unique part of the file name), then ``X-Peer``,
    ``X-MailFrom`` and ``X-RcptTo`` headers, followed by the message as
    received (with LF line endings), or by what :meth:`message_bytes` returns
    when it returns bytes. ``received_header=False`` (or the server's
    ``received_header`` setting off) leaves the ``Received:`` field out.

    Files a crash left in ``tmp/`` are deleted once they are older than
    :attr:`tmp_max_age` (36 hours, the Maildir convention): when the handler
    is created, and then after a stored message at most once per
    :attr:`tmp_sweep_interval`.

    Args:
        mail_dir: the Maildir; it, its parents and its ``tmp``, ``new`` and
            ``cur`` folders are created when missing.
        message_class: the message class used by :meth:`handle_message`.
        received_header: write the ``Received:`` field (the default).

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
        *,
        received_header: bool = True,
    ) -> None:
        if not isinstance(received_header, bool):
            raise TypeError(f"received_header = {received_header!r}: expected True or False")
        self.received_header = received_header
        self._path = Path(mail_dir)
        _create_maildir(self._path)
        self.mailbox = mailbox.Maildir(mail_dir)
        self.mail_dir = mail_dir
        super().__init__(message_class)
        self._names = _MaildirNames()
        self._committer = self._make_committer(self._path / "new")
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
        """A delivery to a new tmp file, its Received and X- headers already buffered.

        The headers are buffered before the first chunk, so a streamed
        message gets them without being held in memory.
        """
        name = self._names.next()
        peer = _peer_text(session.peer, _SOCKNAME.get())
        recipients = ", ".join(_header_text(rcpt) for rcpt in envelope.rcpt_tos)
        headers = (
            f"X-Peer: {_header_text(peer)}\n"
            f"X-MailFrom: {_header_text(envelope.mail_from or '')}\n"
            f"X-RcptTo: {recipients}\n"
        )
        server = _SERVER.get()
        if _wants_received(server, self.received_header):
            # The id is the file name's unique part (time.unique.host).
            received = _received_text(server, session, envelope, name.split(".")[1])
            headers = (received or "").replace("\r\n", "\n") + headers
        return _MaildirDelivery(self._path, name, headers.encode("utf-8"))

    def _make_committer(self, new_dir: Path) -> _MaildirCommitter:
        """The committer every delivery into this Maildir goes through."""
        return _MaildirCommitter(new_dir)

    def _commit_or_discard(self, delivery: _MaildirDelivery) -> None:
        """Commit ``delivery`` (worker thread), then clean ``tmp/`` if it is time."""
        try:
            delivery.commit(self._committer)
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
