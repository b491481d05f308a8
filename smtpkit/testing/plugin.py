"""The pytest plugin: the ``smtp_server`` and ``smtp_server_factory`` fixtures.

Loaded in every pytest run of a project that has smtpkit installed, so it
imports nothing of smtpkit until a test asks for a server.

``smtp_server`` (function scope) is a started :class:`SMTPTestServer`, set
up by the ``smtp_server`` marker's keywords (closest marker wins) and by
indirect parametrization (``request.param``, a dict of the same keywords).
``smtp_server_factory`` (session scope) starts servers with those keywords
for other scopes, or several at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ._factory import ServerFactory
    from ._server import SMTPTestServer

MARKER = "smtp_server"


def pytest_configure(config: pytest.Config) -> None:
    """Register the marker, so ``--strict-markers`` accepts it."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options of the smtp_server fixture's server "
        "(tls, require_starttls, auth, auth_required, auth_require_tls, smtputf8, "
        "size_limit, lmtp, hostname, smtp_kwargs)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Merge the markers' keywords (the closest wins) and ``request.param``."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise TypeError(
                f"@pytest.mark.{MARKER} takes keywords only (tls='starttls', ...); "
                f"got positional {marker.args!r}"
            )
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError(f"indirect parameters of smtp_server must be dicts; got {param!r}")
        options.update(param)
    return options


@pytest.fixture
def smtp_server(request: pytest.FixtureRequest) -> Iterator[SMTPTestServer]:
    """A real SMTP server on 127.0.0.1 that captures mail, for one test."""
    from ._server import SMTPTestServer

    with SMTPTestServer(**_options(request)) as server:
        yield server


@pytest.fixture(scope="session")
def smtp_server_factory() -> Iterator[ServerFactory]:
    """Call it with the marker's keywords to start servers; all stop at the session's end."""
    from ._factory import ServerFactory

    factory = ServerFactory()
    try:
        yield factory
    finally:
        factory.stop_all()
