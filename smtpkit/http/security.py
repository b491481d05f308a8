"""HTTP basic auth and the headers every reply carries.

Both are plain ASGI middleware, so routes mounted later are covered too.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BasicAuth", "SecurityHeaders"]

#: The policy of replies that set none: nothing may load, nothing may frame them.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"


class BasicAuth:
    """Refuse every request without the right ``Authorization: Basic`` credentials (401).

    Args:
        app: the app to protect.
        user: the user name.
        password: the password.
    """

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self._expected = f"{user}:{password}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            reply = JSONResponse(
                {"error": "this capture UI needs HTTP basic auth credentials"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="smtpkit", charset="UTF-8"'},
            )
            await reply(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"basic":
                    return False
                try:
                    given = base64.b64decode(token.strip(), validate=True)
                except (binascii.Error, ValueError):
                    return False
                return secrets.compare_digest(given, self._expected)
        return False


class SecurityHeaders:
    """Add ``nosniff``, ``no-referrer`` and, when a reply sets none, :data:`DEFAULT_CSP`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
            await send(message)

        await self.app(scope, receive, send_with_headers)
