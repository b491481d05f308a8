"""The JSON API under ``/api/v1/``: list, read, download and delete captured messages.

Plain ``def`` endpoints: Starlette runs them in a worker thread, so reading the
Maildir never blocks the event loop that also serves SMTP. Every error is JSON,
``{"error": "..."}``, naming what was wrong.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from .message import Captured, attachment_bytes, attachments
from .release import release, release_targets
from .sse import events
from .store import MaildirStore

__all__ = ["CONTENT_CSP", "api_routes", "error"]

#: The policy of a message's HTML: no scripts, nothing remote, inline styles only.
CONTENT_CSP = "default-src 'none'; img-src data: cid:; style-src 'unsafe-inline'"
#: What raw sources and attachments get, should a browser ever render one.
_DOWNLOAD_CSP = "default-src 'none'; sandbox"
_LIMIT_MAX = 1000
_LIMIT_DEFAULT = 50


def error(status: int, message: str) -> JSONResponse:
    """A JSON error reply."""
    return JSONResponse({"error": message}, status_code=status)


class _NotFound(Exception):
    pass


def _store(request: Request) -> MaildirStore:
    store: MaildirStore = request.app.state.store
    return store


def _message(request: Request) -> Captured:
    id = request.path_params["id"]
    found = _store(request).get(id)
    if found is None:
        raise _NotFound(f"no message with id {id!r}")
    return found


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name}: {text!r} is not an integer from {low} to {high}")
    return int(text)


def list_messages(request: Request) -> Response:
    """``GET /api/v1/messages?limit=&offset=&q=``: newest first."""
    try:
        limit = _int_param(request, "limit", _LIMIT_DEFAULT, 1, _LIMIT_MAX)
        offset = _int_param(request, "offset", 0, 0, 10**9)
    except ValueError as exc:
        return error(400, str(exc))
    query = request.query_params.get("q", "")
    page = _store(request).page(query, limit=limit, offset=offset)
    body: dict[str, Any] = {"total": page.total, "limit": limit, "offset": offset, "q": query}
    body["messages"] = [message.summary() for message in page.messages]
    return JSONResponse(body)


def delete_all(request: Request) -> Response:
    """``DELETE /api/v1/messages``."""
    return JSONResponse({"deleted": _store(request).delete_all()})


def get_message(request: Request) -> Response:
    """``GET /api/v1/messages/{id}``: headers, text, HTML and the attachments' metadata."""
    return JSONResponse(_message(request).detail())


def delete_message(request: Request) -> Response:
    """``DELETE /api/v1/messages/{id}``."""
    id = request.path_params["id"]
    if not _store(request).delete(id):
        raise _NotFound(f"no message with id {id!r}")
    return JSONResponse({"deleted": 1})


def raw(request: Request) -> Response:
    """``GET /api/v1/messages/{id}/raw``: the stored bytes, as ``message/rfc822``."""
    headers = {"Content-Security-Policy": _DOWNLOAD_CSP}
    return Response(_message(request).raw(), media_type="message/rfc822", headers=headers)


def html(request: Request) -> Response:
    """``GET /api/v1/messages/{id}/html``: the HTML body, under :data:`CONTENT_CSP`."""
    body = _message(request).html()
    if body is None:
        raise _NotFound(f"message {request.path_params['id']!r} has no HTML body")
    headers = {"Content-Security-Policy": CONTENT_CSP, "Referrer-Policy": "no-referrer"}
    return Response(body, media_type="text/html; charset=utf-8", headers=headers)


def attachment(request: Request) -> Response:
    """``GET /api/v1/messages/{id}/attachments/{index}``: the decoded bytes, to download."""
    parts = attachments(_message(request).parsed())
    index = request.path_params["index"]
    if not 0 <= index < len(parts):
        raise _NotFound(f"message {request.path_params['id']!r} has no attachment {index}")
    part = parts[index]
    name = part.get_filename() or f"attachment-{index}"
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}",
        "Content-Security-Policy": _DOWNLOAD_CSP,
    }
    return Response(attachment_bytes(part), media_type=part.get_content_type(), headers=headers)


def not_found(request: Request, exc: Exception) -> Response:
    """The reply to :class:`_NotFound`."""
    return error(404, str(exc))


def deleted_meanwhile(request: Request, exc: Exception) -> Response:
    """The reply when a message's file went away while it was being read."""
    return error(404, f"message {request.path_params.get('id')!r} was deleted meanwhile")


EXCEPTION_HANDLERS = {_NotFound: not_found, FileNotFoundError: deleted_meanwhile}


def api_routes() -> list[BaseRoute]:
    """The routes of ``/api/v1/``."""
    prefix = "/api/v1/messages"
    return [
        Route(prefix, list_messages, methods=["GET"]),
        Route(prefix, delete_all, methods=["DELETE"]),
        Route(prefix + "/{id}", get_message, methods=["GET"]),
        Route(prefix + "/{id}", delete_message, methods=["DELETE"]),
        Route(prefix + "/{id}/raw", raw, methods=["GET"]),
        Route(prefix + "/{id}/html", html, methods=["GET"]),
        Route(prefix + "/{id}/attachments/{index:int}", attachment, methods=["GET"]),
        Route(prefix + "/{id}/release", release, methods=["POST"]),
        Route("/api/v1/release-targets", release_targets, methods=["GET"]),
        Route("/api/v1/events", events, methods=["GET"]),
    ]
