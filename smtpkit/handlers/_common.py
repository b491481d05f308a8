"""What every handler module shares: the logger, the 451 reply, worker threads, CLI parsers."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, NoReturn, Protocol, TypeVar

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
