"""``/healthz`` and ``/metrics`` on the HTTP listener.

``/healthz`` answers ``200 accepting`` while the SMTP server of this process
listens, ``503 draining`` once it has stopped accepting and is finishing its
sessions (and ``503 starting`` before it listens). ``/metrics`` is the
Prometheus text format of :mod:`smtpkit.metrics`; it is mounted only when
prometheus-client is installed.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from .. import metrics, server

__all__ = ["health_routes"]


async def _healthz(request: Request) -> Response:
    state = server.serving_state()
    return PlainTextResponse(f"{state}\n", status_code=200 if state == "accepting" else 503)


async def _metrics(request: Request) -> Response:
    # Reading every worker's files takes disk reads: off the event loop.
    body = await asyncio.get_running_loop().run_in_executor(None, metrics.exposition)
    return Response(body, media_type=metrics.CONTENT_TYPE)


def health_routes(*, with_metrics: bool) -> list[BaseRoute]:
    """The ``/healthz`` route, and ``/metrics`` when ``with_metrics``.

    With ``with_metrics``, counting starts now (:func:`smtpkit.metrics.enable`).
    """
    routes: list[BaseRoute] = [Route("/healthz", _healthz, methods=["GET", "HEAD"])]
    if with_metrics:
        metrics.enable()
        routes.append(Route("/metrics", _metrics, methods=["GET"]))
    return routes
