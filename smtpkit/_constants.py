"""Constants shared across the protocol's layers. Imports nothing of smtpkit.

The I/O shell (:mod:`smtpkit._connection`), the commands, AUTH and the App
all use these; keeping them at the bottom lets each layer import them without
importing the layer that happens to use them most.
"""

from __future__ import annotations

import enum

__all__ = ["AUTH_LINE_LIMIT", "MISSING", "Phase", "_Missing"]

# RFC 4954 §4: AUTH command lines and responses may be up to 12288 octets.
AUTH_LINE_LIMIT = 12288


class _Missing(enum.Enum):
    MISSING = object()

    def __repr__(self) -> str:
        return "MISSING"


#: Returned by hook lookups and ``challenge_auth`` when there is nothing.
MISSING = _Missing.MISSING


class Phase(enum.IntEnum):
    """What a connection is doing, which decides what its input bytes are.

    ``PROXY``: waiting for the PROXY protocol header (before the greeting);
    ``COMMANDS``: reading command lines; ``DATA``: receiving a message, the
    input goes to the transfer, not the command buffer; ``CLOSING``: the
    connection was closed (or is being closed), input is ignored and only
    the last replies may still leave.
    """

    PROXY = 0
    COMMANDS = 1
    DATA = 2
    CLOSING = 3
