"""The options of a test server, checked once, with errors that name the option."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["ServerOptions"]

TLSMode = Literal["starttls", "implicit"]
_TLS_MODES = ("starttls", "implicit")


@dataclass(frozen=True, kw_only=True)
class ServerOptions:
    """How a test server is set up; the keywords of the ``smtp_server`` marker.

    Attributes:
        tls: ``"starttls"`` (offer STARTTLS), ``"implicit"`` (TLS from the
            first byte) or ``None``; the certificate is made on the fly.
        require_starttls: refuse mail commands until STARTTLS (with ``tls="starttls"``).
        auth: ``{"user": "password"}`` to check logins, ``"any"`` to accept
            every PLAIN/LOGIN login, or ``None`` for no AUTH.
        auth_required: refuse ``MAIL`` until the client authenticated.
        auth_require_tls: offer AUTH only over TLS; ``None`` (the default)
            means "when ``tls`` is set".
        smtputf8: offer SMTPUTF8 (RFC 6531).
        size_limit: the largest message in octets (advertised as SIZE);
            ``None`` for the server's default (32 MiB), ``0`` for no limit.
        lmtp: speak LMTP (RFC 2033) instead of SMTP.
        hostname: the server's name in its greeting.
        smtp_kwargs: other keyword arguments for :class:`smtpkit.smtp.SMTP`.
    """

    tls: TLSMode | None = None
    require_starttls: bool = False
    auth: Mapping[str, str] | Literal["any"] | None = field(default=None, repr=False)
    auth_required: bool = False
    auth_require_tls: bool | None = None
    smtputf8: bool = True
    size_limit: int | None = None
    lmtp: bool = False
    hostname: str = "localhost"
    smtp_kwargs: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tls is not None and self.tls not in _TLS_MODES:
            raise ValueError(f"tls={self.tls!r}: expected 'starttls', 'implicit' or None")
        if self.require_starttls and self.tls != "starttls":
            raise ValueError("require_starttls=True needs tls='starttls'")
        self._check_auth()
        self._check_flags()
        limit = self.size_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, int) or limit < 0
        ):
            raise ValueError(
                f"size_limit={limit!r}: expected a number of octets, 0 or more, or None"
            )
        if not isinstance(self.smtp_kwargs, Mapping):
            raise TypeError(f"smtp_kwargs={self.smtp_kwargs!r}: expected a mapping of keywords")

    def _check_flags(self) -> None:
        for name in ("require_starttls", "auth_required", "smtputf8", "lmtp"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name}={getattr(self, name)!r}: expected True or False")
        if self.auth_require_tls is not None and not isinstance(self.auth_require_tls, bool):
            raise TypeError(
                f"auth_require_tls={self.auth_require_tls!r}: expected True, False or None"
            )
        name = self.hostname
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"hostname={name!r}: expected a host name, without spaces")

    def _check_auth(self) -> None:
        auth = self.auth
        if auth is None or auth == "any":
            pass
        elif not isinstance(auth, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in auth.items()
        ):
            # The value is not shown: it may hold passwords.
            raise TypeError(
                f"auth: expected {{'user': 'password', ...}}, 'any' or None; "
                f"got a {type(auth).__name__} that is not that"
            )
        if self.auth_required and auth is None:
            raise ValueError("auth_required=True needs auth={'user': 'password'} or auth='any'")

    @classmethod
    def from_keywords(cls, **keywords: Any) -> ServerOptions:
        """Build the options from keywords, naming any that is not an option.

        Raises:
            TypeError: an unknown keyword or a value of the wrong type.
            ValueError: a value out of range or options that do not fit together.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(keywords) - set(known))
        if unknown:
            raise TypeError(
                f"unknown smtp_server option(s) {', '.join(unknown)}; expected: {', '.join(known)}"
            )
        return cls(**keywords)

    @property
    def tls_for_auth(self) -> bool:
        """Whether AUTH is offered only over TLS."""
        if self.auth_require_tls is None:
            return self.tls is not None
        return self.auth_require_tls
