"""``POST /api/v1/messages/{id}/release``: send a captured message on to an SMTP server.

Only to a server on the allow-list (``--http-release-to HOST:PORT``): anything else is
refused with 403, so the UI can never be used to send mail to an arbitrary host. The
message goes with its envelope (``X-MailFrom``, ``X-RcptTo``) unless the request names
other recipients, and without the envelope headers the Mailbox handler added.
"""

from __future__ import annotations

import json
import smtplib
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._cli.banner import format_address
from .._cli.options import UsageError
from .message import Captured, without_envelope
from .options import HttpOptions, parse_address

__all__ = ["SEND_TIMEOUT", "release", "release_targets"]

#: Seconds the connection to the target server may take, per operation.
SEND_TIMEOUT = 30.0


def _reply(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _target_of(request: Request) -> tuple[str, int] | Response:
    # JSON only: a form on another site cannot send it without the browser asking first.
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return _reply(415, "send the release request as Content-Type: application/json")
    try:
        body: Any = json.loads(await request.body() or b"null")
    except ValueError as exc:
        return _reply(400, f"the request body is not JSON: {exc}")
    text = body.get("to") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return _reply(400, 'expected a JSON object with "to": "HOST:PORT"')
    try:
        target = parse_address(text, "to")
    except UsageError as exc:
        return _reply(400, str(exc))
    options: HttpOptions = request.app.state.options
    if target not in options.release_to:
        allowed = ", ".join(map(format_address, options.release_to)) or "none"
        return _reply(
            403,
            f"to: {text!r} is not an allowed release target (allowed: {allowed}; "
            "add it with --http-release-to)",
        )
    return target


def release_targets(request: Request) -> Response:
    """``GET /api/v1/release-targets``: the allowed ``HOST:PORT`` targets, for the page."""
    options: HttpOptions = request.app.state.options
    return JSONResponse({"targets": [format_address(target) for target in options.release_to]})


async def release(request: Request) -> Response:
    """Release the message to the allowed target named in the JSON body's ``"to"``."""
    target = await _target_of(request)
    if isinstance(target, Response):
        return target
    store = request.app.state.store
    id = request.path_params["id"]
    found: Captured | None = await anyio.to_thread.run_sync(store.get, id)
    if found is None:
        return _reply(404, f"no message with id {id!r}")
    mail_from = found.header("X-MailFrom")
    rcpt_tos = found.rcpt_tos()
    if not rcpt_tos:
        return _reply(422, f"message {id!r} has no envelope recipients (X-RcptTo) to send to")
    try:
        raw = await anyio.to_thread.run_sync(found.raw)
        await anyio.to_thread.run_sync(_send, target, mail_from, rcpt_tos, raw)
    except (OSError, smtplib.SMTPException) as exc:
        return _reply(502, f"{format_address(target)} did not take the message: {exc}")
    return JSONResponse({"released": id, "to": format_address(target), "rcpt_tos": rcpt_tos})


def _send(target: tuple[str, int], mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
    content = without_envelope(raw).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    with smtplib.SMTP(target[0], target[1], timeout=SEND_TIMEOUT) as client:
        client.sendmail(mail_from, rcpt_tos, content)
