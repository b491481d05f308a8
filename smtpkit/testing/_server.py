"""The test server: smtpkit's threaded Controller with a capturing handler.

It listens on ``127.0.0.1``, on a port the system picks, and keeps its
certificate in a temporary folder of its own, so any number of servers (in
one process or under pytest-xdist) run side by side.
"""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from smtpkit.auth import AuthResult, LoginPassword, MemoryAuthenticator
from smtpkit.controller import Controller
from smtpkit.smtp import SMTP

from ._faults import Faults
from ._handler import CaptureHandler
from ._inbox import Inbox
from ._messages import CapturedMessage
from ._options import ServerOptions
from ._protocol import protocol_class
from ._tls import ServerCertificates, make_certificates

__all__ = ["SMTPTestServer"]

HOST = "127.0.0.1"
DEFAULT_WAIT = 5.0


def accept_any_login(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    """An authenticator that accepts every PLAIN or LOGIN user name and password."""
    if isinstance(auth_data, LoginPassword):
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)


class _TestController(Controller):
    """A Controller that serves the test protocol class."""

    def __init__(self, handler: Any, options: ServerOptions, **kwargs: Any) -> None:
        super().__init__(handler, hostname=HOST, port=0, **kwargs)
        self._protocol = protocol_class(options.lmtp)
        # AUTH required without TLS is what a test asked for: skip the warning
        # the class gives about it (per connection, from the server's thread).
        self._clear_auth = options.auth_required and not options.tls_for_auth

    def factory(self) -> SMTP:
        protocol = self._protocol(self.handler, **self.SMTP_kwargs)
        if self._clear_auth:
            protocol._auth_require_tls = False
        return protocol


def _authenticator(options: ServerOptions) -> Any:
    if options.auth is None:
        return None
    if options.auth == "any":
        return accept_any_login
    return MemoryAuthenticator(options.auth)


def _smtp_keywords(options: ServerOptions, tls: ServerCertificates | None) -> dict[str, Any]:
    keywords: dict[str, Any] = {
        "enable_SMTPUTF8": options.smtputf8,
        "auth_required": options.auth_required,
        "auth_require_tls": options.tls_for_auth or options.auth_required,
        "authenticator": _authenticator(options),
    }
    if options.size_limit is not None:
        keywords["data_size_limit"] = options.size_limit
    if tls is not None and options.tls == "starttls":
        keywords["tls_context"] = tls.server_context
        keywords["require_starttls"] = options.require_starttls
    if tls is not None and options.tls == "implicit":
        keywords["ssl_context"] = tls.server_context
    keywords.update(options.smtp_kwargs)
    return keywords


class SMTPTestServer:
    """A real SMTP (or LMTP) server on 127.0.0.1 that captures what it receives.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. The
    ``smtp_server`` fixture gives a started one.

    Args:
        options: the setup; or give its fields as keywords instead.
        **keywords: the :class:`ServerOptions` fields (``tls="starttls"``, ...).

    Attributes:
        options: the :class:`ServerOptions` in use.
        faults: the :class:`Faults` to inject; add rules at any time.
    """

    def __init__(self, options: ServerOptions | None = None, **keywords: Any) -> None:
        if options is not None and keywords:
            raise TypeError("give either options or keywords, not both")
        self.options = options or ServerOptions.from_keywords(**keywords)
        self.faults = Faults()
        self._inbox = Inbox()
        self._folder: Path | None = None
        self._tls: ServerCertificates | None = None
        self._controller: _TestController | None = None

    # -- life cycle ----------------------------------------------------------

    def start(self) -> SMTPTestServer:
        """Start serving; return once the server answers.

        Raises:
            RuntimeError: already started, or TLS asked for without trustme.
        """
        if self._controller is not None:
            raise RuntimeError("this test server is already running")
        self._folder = Path(tempfile.mkdtemp(prefix="smtpkit-test-"))
        try:
            if self.options.tls is not None:
                self._tls = make_certificates(self._folder)
            handler = CaptureHandler(self._inbox, self.faults)
            keywords = _smtp_keywords(self.options, self._tls)
            controller = _TestController(
                handler, self.options, server_hostname=self.options.hostname, **keywords
            )
            controller.start()
        except BaseException:
            self._remove_folder()
            raise
        self._controller = controller
        return self

    def stop(self) -> None:
        """Stop serving and remove the temporary folder; does nothing when stopped."""
        controller, self._controller = self._controller, None
        try:
            if controller is not None:
                controller.stop()
        finally:
            self._remove_folder()

    def _remove_folder(self) -> None:
        folder, self._folder = self._folder, None
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def __enter__(self) -> SMTPTestServer:
        """Start the server unless it runs already (a factory's servers do)."""
        return self if self.running else self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what a test reads -----------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._controller is not None

    def _running(self) -> _TestController:
        if self._controller is None:
            raise RuntimeError("the test server is not running: call start() or use 'with'")
        return self._controller

    @property
    def host(self) -> str:
        """The address to connect to: ``"127.0.0.1"``."""
        return HOST

    @property
    def port(self) -> int:
        """The port the server listens on (picked by the system)."""
        return int(self._running().port)

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)``."""
        return self.host, self.port

    @property
    def messages(self) -> list[CapturedMessage]:
        """The accepted messages so far, oldest first (a copy: it does not grow)."""
        return self._inbox.snapshot()

    def clear(self) -> None:
        """Forget the captured messages (the faults stay: ``faults.clear()`` for those)."""
        self._inbox.clear()

    def wait(self, n: int = 1, timeout: float = DEFAULT_WAIT) -> list[CapturedMessage]:
        """Block until at least ``n`` messages were captured; return all of them.

        Raises:
            MessageWaitTimeout: (a ``TimeoutError``) naming ``n``, the count and
                the timeout, when fewer arrived in time.
        """
        return self._inbox.wait(n, timeout)

    async def wait_for(self, n: int = 1, timeout: float = DEFAULT_WAIT) -> list[CapturedMessage]:
        """Like :meth:`wait`, for async tests: the test's event loop keeps running."""
        return await self._inbox.wait_async(n, timeout)

    # -- TLS -----------------------------------------------------------------------

    @property
    def client_tls_context(self) -> ssl.SSLContext | None:
        """An :class:`ssl.SSLContext` that trusts this server (``None`` without ``tls``)."""
        return self._tls.client_context if self._tls is not None else None

    @property
    def ca_path(self) -> Path | None:
        """The path of the CA certificate, PEM (``None`` without ``tls``)."""
        return self._tls.ca_path if self._tls is not None else None

    def __repr__(self) -> str:
        where = f"{HOST}:{self._controller.port}" if self._controller else "stopped"
        return f"<SMTPTestServer {where} {self.options.tls or 'plain'} {len(self.messages)} msgs>"
