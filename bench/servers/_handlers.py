"""Handlers the benchmark servers share; they rely only on the documented hook names."""

from __future__ import annotations

import os
import tempfile
from typing import IO, Any


class ContentHandler:
    """The classic handler: reads the whole message from ``envelope.content``."""

    def __init__(self) -> None:
        self.received_bytes = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Count the message's size and accept it.

        Returns:
            The reply "250 OK".
        """
        self.received_bytes += len(envelope.content)
        return "250 OK"


class SpoolHandler:
    """A streaming handler: writes each chunk of the message to a spool file as it arrives.

    The file is removed once the message is accepted, so repeated runs do not fill the disk.
    """

    def __init__(self, spool_dir: str | None) -> None:
        self.spool_dir = spool_dir or tempfile.gettempdir()
        self._files: dict[int, IO[bytes]] = {}

    def _file_for(self, envelope: Any) -> IO[bytes]:
        key = id(envelope)
        spool = self._files.get(key)
        if spool is None:
            spool = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in handle_DATA
                dir=self.spool_dir, prefix="spool-", delete=False
            )
            self._files[key] = spool
        return spool

    async def handle_DATA_CHUNK(self, server: Any, session: Any, envelope: Any, chunk: Any) -> None:
        """Append one chunk of message data to this transaction's spool file."""
        self._file_for(envelope).write(chunk)

    def _discard(self, envelope: Any) -> None:
        spool = self._files.pop(id(envelope), None)
        if spool is not None:
            spool.close()
            os.unlink(spool.name)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Close (and remove) the spool file of this transaction and accept the message.

        Returns:
            The reply "250 OK".
        """
        self._discard(envelope)
        return "250 OK"

    async def handle_DATA_ABORT(
        self, server: Any, session: Any, envelope: Any, reason: str
    ) -> None:
        """Remove the spool file of a transfer that did not finish."""
        self._discard(envelope)
