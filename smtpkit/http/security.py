"""HTTP basic auth, the loopback Host check, and the headers every reply carries.

All are plain ASGI middleware, so routes mounted later are covered too.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["LOOPBACK_NAMES", "BasicAuth", "LoopbackHost", "SecurityHeaders"]

#: The policy of replies that set none: nothing may load, nothing may frame them.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'"
#: The host names a listener on loopback answers to.
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def _host_name(value: bytes) -> str:
    """``127.0.0.1`` of ``127.0.0.1:8026``, ``::1`` of ``[::1]:8026``."""
    text = value.decode("latin-1").strip().lower()
    if text.startswith("["):
        return text[1:].partition("]")[0]
    return text.rpartition(":")[0] if ":" in text else text


class LoopbackHost:
    """On loopback, answer only requests whose ``Host`` is a loopback name (else 400).

    A web page the user visits could otherwise point a name it controls at 127.0.0.1
    (DNS rebinding) and read the captured mail through the user's browser.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"")
            if _host_name(host) not in LOOPBACK_NAMES:
                reply = JSONResponse(
                    {
                        "error": f"Host {host.decode('latin-1')!r} is not a loopback name; "
                        "open the capture UI as http://127.0.0.1:PORT/ or http://localhost:PORT/"
                    },
                    status_code=400,
                )
                await reply(scope, receive, send)
                return
        await self.app(scope, receive, send)


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
