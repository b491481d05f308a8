"""The optional HTTP listener of ``smtpkit run --http``: the capture UI and its JSON API.

It runs on the same event loop as the SMTP server (an ASGI app served by uvicorn) and
needs the ``http`` extra (``pip install 'smtpkit-server[http]'``). The pieces:

* :mod:`~smtpkit.http.options`: the ``--http*`` flags and :class:`HttpOptions`
  (importable without the extra);
* :mod:`~smtpkit.http.store` and :mod:`~smtpkit.http.message`: the Maildir read as
  captured messages;
* :mod:`~smtpkit.http.api`, :mod:`~smtpkit.http.sse`, :mod:`~smtpkit.http.page`,
  :mod:`~smtpkit.http.release`: the routes;
* :mod:`~smtpkit.http.app`: :func:`create_app`, which takes more routes to mount;
* :mod:`~smtpkit.http.server`: serving the app inside a running event loop.

``docs/capture.md`` is the reference.
"""

from __future__ import annotations

from .options import DEFAULT_ADDRESS, HttpOptions, require_extra

__all__ = ["DEFAULT_ADDRESS", "HttpOptions", "require_extra"]
