"""`Sink` discards mail; `Debugging` prints it."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from typing_extensions import Self

from ._common import CLIParser
from ._headers import _peer_text, _sockname

if TYPE_CHECKING:
    from smtpkit.smtp import SMTP, Envelope, Session


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
