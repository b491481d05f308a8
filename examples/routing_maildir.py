"""Recipient routing into one Maildir per user.

``anne@example.com`` goes to ``<root>/anne``, ``postmaster@example.com`` to
``<root>/postmaster``; any other recipient is refused at RCPT time with
``550 5.1.1``. The route functions are plain ``def``: they write to disk, so
the App runs them in worker threads and the event loop never waits for the
disk.

Run it with ``python examples/routing_maildir.py`` (the root is ``./mail``,
or ``$MAILDIR_ROOT``).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from smtpkit import App, ServerConfig
from smtpkit.handlers import Mailbox
from smtpkit.routing import RoutedMessage


class Maildirs:
    """One durable Maildir per user under ``root``, opened on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._boxes: dict[str, Mailbox] = {}
        self._lock = threading.Lock()

    def deliver(self, user: str, message: RoutedMessage) -> None:
        """Store the message in ``user``'s Maildir (blocking: call it from a thread)."""
        with self._lock:
            box = self._boxes.get(user)
            if box is None:
                box = self._boxes[user] = Mailbox(self.root / user)
        box.handle_message(message.message)


def create_app(root: Path, domain: str = "example.com") -> App:
    """An app delivering ``<user>@<domain>`` into ``root/<user>``."""
    app = App(ServerConfig(hostname=f"mx.{domain}"), name="maildir")
    boxes = Maildirs(root)

    @app.route(f"postmaster@{domain}")
    def postmaster(message: RoutedMessage) -> str:
        boxes.deliver("postmaster", message)
        return "250 2.0.0 Delivered to postmaster"

    @app.route(f"(user)@{domain}", user="[a-z0-9][a-z0-9._-]*")
    def mailbox(message: RoutedMessage) -> str:
        # One call per message, with every recipient of this route.
        for address in message.recipients:
            boxes.deliver(message.captures[address]["user"], message)
        return "250 2.0.0 Delivered"

    return app


app = create_app(Path(os.environ.get("MAILDIR_ROOT", "mail")))

if __name__ == "__main__":
    app.run()
