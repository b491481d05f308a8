"""``GET /api/v1/events``: server-sent events, one ``change`` each time the Maildir changes.

The Maildir's ``new/`` and ``cur/`` folders are polled (their modification times and the
number of files), so mail stored by any process, such as another worker, is seen. The
page reloads its list on each event. The stream ends when the server stops.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .store import MaildirStore

__all__ = ["KEEPALIVE", "POLL_INTERVAL", "events"]

#: Seconds between two looks at the Maildir.
POLL_INTERVAL = 0.5
#: Seconds between two comment lines that keep idle proxies from closing the stream.
KEEPALIVE = 15.0


async def events(request: Request) -> Response:
    """Stream ``event: change`` whenever a message is added or removed."""
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    stream = _changes(request.app.state.store, request.app.state.stopping)
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


async def _changes(store: MaildirStore, stopping: threading.Event) -> AsyncIterator[str]:
    last = await anyio.to_thread.run_sync(store.version)
    yield "retry: 1000\nevent: ready\ndata: {}\n\n"
    quiet = 0.0
    while not stopping.is_set():
        await anyio.sleep(POLL_INTERVAL)
        version = await anyio.to_thread.run_sync(store.version)
        quiet += POLL_INTERVAL
        if version != last:
            last, quiet = version, 0.0
            yield "event: change\ndata: {}\n\n"
        elif quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
