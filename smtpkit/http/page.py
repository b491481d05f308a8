"""The capture page: one HTML file, one script, one style sheet, no build step.

The page is served under :data:`PAGE_CSP`: its own script and styles only, requests to
its own API only, frames from its own origin only. A message's HTML is shown in an
``<iframe sandbox>`` without ``allow-scripts``, loaded from ``/api/v1/messages/{id}/html``
under its own, stricter policy.
"""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

__all__ = ["PAGE_CSP", "page_routes"]

PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/capture.js": ("capture.js", "text/javascript; charset=utf-8"),
    "/static/capture.css": ("capture.css", "text/css; charset=utf-8"),
}


def _read(name: str) -> bytes:
    return (
        resources.files(__package__ or "smtpkit.http")
        .joinpath("static")
        .joinpath(name)
        .read_bytes()
    )


def _file_route(path: str, name: str, media_type: str) -> Route:
    body = _read(name)

    def endpoint(request: Request) -> Response:
        headers = {"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"}
        return Response(body, media_type=media_type, headers=headers)

    return Route(path, endpoint, methods=["GET"])


def page_routes() -> list[BaseRoute]:
    """The page and its static files."""
    return [_file_route(path, name, media) for path, (name, media) in _FILES.items()]
