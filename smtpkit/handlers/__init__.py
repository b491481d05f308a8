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

from ._basic import Debugging, Sink
from ._common import CLIParser
from ._headers import _peer_text as _peer_text
from ._mailbox import Mailbox
from ._mailbox import _MaildirDelivery as _MaildirDelivery
from ._message import AsyncMessage, Message, MessageBase
from ._proxy import Proxy

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
