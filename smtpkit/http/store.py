"""The captured Maildir, read and pruned by the capture UI.

A message's id is its file name in ``new/`` or ``cur/``. Ids are checked against a
strict pattern before any path is built from them, so ``../`` or an absolute path can
never reach the file system; an id that does not name a file is simply not found.
Messages are read once and kept while their file is unchanged (modification time and
size): their headers, and the text searches look in. Every method does disk I/O: call
them from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from .message import Captured

__all__ = ["MaildirStore", "Page", "valid_id"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._,:=+-]{0,254}")
_FOLDERS = ("new", "cur")


def valid_id(text: str) -> bool:
    """Whether ``text`` can be a Maildir file name (no ``/``, no leading dot)."""
    return _ID.fullmatch(text) is not None and ".." not in text


@dataclass(frozen=True)
class Page:
    """One page of the message list: the messages, and how many matched in all."""

    total: int
    messages: list[Captured]


def _matches(message: Captured, query: str) -> bool:
    try:
        return message.matches(query)
    except FileNotFoundError:  # deleted since it was listed
        return False


class MaildirStore:
    """The messages of one Maildir.

    Args:
        path: the Maildir (it may not exist yet: it then holds no message).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._cache: dict[str, tuple[tuple[int, int], Captured]] = {}
        self._lock = threading.Lock()

    def version(self) -> tuple[int, ...]:
        """A value that changes whenever a message is added or removed."""
        stamp: list[int] = []
        for folder in _FOLDERS:
            try:
                stat = (self.path / folder).stat()
            except OSError:
                stamp += [0, 0]
                continue
            stamp += [stat.st_mtime_ns, stat.st_nlink]
        return (*stamp, len(self._entries()))

    def page(self, query: str = "", limit: int = 50, offset: int = 0) -> Page:
        """Messages newest first, those matching ``query`` when it is not empty."""
        found = [m for m in self._all() if not query or _matches(m, query)]
        found.sort(key=lambda m: (m.time, m.id), reverse=True)
        return Page(total=len(found), messages=found[offset : offset + limit])

    def get(self, id: str) -> Captured | None:
        """Message ``id``, or None when the id is invalid or names no message."""
        path = self._path_of(id)
        if path is None:
            return None
        try:
            return self._load(id, path, path.stat())
        except FileNotFoundError:
            return None

    def delete(self, id: str) -> bool:
        """Delete message ``id``; return whether there was one."""
        path = self._path_of(id)
        if path is None:
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        self._cache.pop(id, None)
        return True

    def delete_all(self) -> int:
        """Delete every message; return how many were deleted."""
        count = 0
        for id in list(self._entries()):
            count += self.delete(id)
        return count

    def _entries(self) -> dict[str, Path]:
        entries: dict[str, Path] = {}
        for folder in _FOLDERS:
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                for entry in os.scandir(self.path / folder):
                    if valid_id(entry.name) and entry.is_file(follow_symlinks=False):
                        entries[entry.name] = Path(entry.path)
        return entries

    def _all(self) -> list[Captured]:
        found = []
        for id, path in self._entries().items():
            with contextlib.suppress(FileNotFoundError):
                found.append(self._load(id, path, path.stat()))
        with self._lock:
            for gone in set(self._cache) - {m.id for m in found}:
                self._cache.pop(gone, None)
        return found

    def _path_of(self, id: str) -> Path | None:
        if not valid_id(id):
            return None
        for folder in _FOLDERS:
            path = self.path / folder / id
            if path.is_file() and not path.is_symlink():
                return path
        return None

    def _load(self, id: str, path: Path, stat: os.stat_result) -> Captured:
        key = (stat.st_mtime_ns, stat.st_size)
        cached = self._cache.get(id)
        if cached is not None and cached[0] == key:
            return cached[1]
        captured = Captured.from_file(id, path, stat.st_size, stat.st_mtime)
        captured.headers  # noqa: B018 - parsed here, in the worker thread, and kept
        with self._lock:
            self._cache[id] = (key, captured)
        return captured
