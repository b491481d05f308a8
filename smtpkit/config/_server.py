"""The whole configuration, :class:`ServerConfig`, and the functions over its settings.

``ServerConfig`` holds the general settings and one section per concern; its methods load it
from the sources (``_loading``) and translate it to and from ``SMTP(...)`` arguments
(``_bridge``). :func:`config_fields` and :func:`parse_setting` list and parse its settings
for the docs, the CLI and the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from typing_extensions import Self

from ._base import _check_networks, _did_you_mean, _expect, _Section
from ._bridge import _NOT_CONFIG, _SMTP_KWARGS, _from_smtp_value
from ._loading import ENV_CONFIG_FILE, _default, _leaves, _parse_setting, _Sources
from ._sections import (
    AuthConfig,
    LimitsConfig,
    ListenConfig,
    ProxyProtocolConfig,
    RateLimitsConfig,
    TLSConfig,
    WorkersConfig,
)

__all__ = ["LOG_LEVELS", "ServerConfig", "config_fields", "parse_setting"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""The accepted values of ``log_level`` (case-insensitive; stored in lower case)."""


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class ServerConfig(_Section):
    """The whole server configuration: general settings and one section per concern."""

    hostname: str | None = field(
        default=None,
        metadata={"doc": "Name in the 220 greeting and EHLO reply; unset = the machine's FQDN."},
    )
    ident: str | None = field(
        default=None,
        metadata={"doc": "Software name after the hostname in the greeting; unset = smtpkit's."},
    )
    enable_smtputf8: bool = field(
        default=False,
        metadata={"doc": "Offer SMTPUTF8 and accept UTF-8 addresses and headers (RFC 6531)."},
    )
    decode_data: bool = field(
        default=False,
        metadata={"doc": "Decode message content to str (envelope.content) instead of bytes."},
    )
    enhanced_status_codes: bool = field(
        default=True,
        metadata={
            "doc": "Offer ENHANCEDSTATUSCODES and put an RFC 3463 code (5.1.1) in every reply "
            "(RFC 2034); off = aiosmtpd's exact reply texts."
        },
    )
    chunking: bool = field(
        default=True,
        metadata={
            "doc": "Offer CHUNKING and BINARYMIME and take messages by BDAT (RFC 3030); "
            "off = DATA only, as aiosmtpd."
        },
    )
    dsn: bool = field(
        default=True,
        metadata={
            "doc": "Offer DSN and accept RET/ENVID on MAIL and NOTIFY/ORCPT on RCPT (RFC 3461), "
            "on envelope.dsn and envelope.rcpt_dsn."
        },
    )
    received_header: bool = field(
        default=True,
        metadata={
            "doc": "Put a Received trace field in front of each message the App's routes, "
            "Mailbox and Proxy get (RFC 5321 §4.4)."
        },
    )
    limits_extension: bool = field(
        default=True,
        metadata={
            "doc": "Offer LIMITS RCPTMAX (and MAILMAX with limits.max_messages_per_session) "
            "in the EHLO reply (RFC 9422)."
        },
    )
    requiretls: bool = field(
        default=True,
        metadata={
            "doc": "Offer REQUIRETLS inside TLS and accept MAIL's REQUIRETLS parameter there "
            "(RFC 8689), on envelope.require_tls."
        },
    )
    xclient_trusted_networks: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "CIDR networks whose clients (proxies) may send XCLIENT to name the real "
            "client; empty = XCLIENT off."
        },
    )
    xforward_trusted_networks: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "CIDR networks whose clients (relays) may send XFORWARD to name a message's "
            "original client; empty = XFORWARD off."
        },
    )
    loop: Literal["asyncio", "uvloop"] = field(
        default="asyncio",
        metadata={"doc": "Event loop used by `smtpkit run` and App.serve()."},
    )
    log_level: str = field(
        default="info",
        metadata={"doc": "Logging level: critical, error, warning, info or debug."},
    )
    log_format: Literal["text", "json"] = field(
        default="text",
        metadata={"doc": "Log line format: text, or json (one object per line)."},
    )
    maildir: str = field(
        default="smtpkit-mail",
        metadata={"doc": "Maildir that the built-in default app delivers to."},
    )
    listen: ListenConfig = field(
        default_factory=ListenConfig, metadata={"doc": "Where to accept connections."}
    )
    limits: LimitsConfig = field(
        default_factory=LimitsConfig, metadata={"doc": "Per-client sizes, counts and timeouts."}
    )
    tls: TLSConfig = field(default_factory=TLSConfig, metadata={"doc": "Certificates and policy."})
    auth: AuthConfig = field(default_factory=AuthConfig, metadata={"doc": "SMTP AUTH policy."})
    proxy_protocol: ProxyProtocolConfig = field(
        default_factory=ProxyProtocolConfig, metadata={"doc": "PROXY protocol support."}
    )
    workers: WorkersConfig = field(
        default_factory=WorkersConfig, metadata={"doc": "Worker processes."}
    )
    rate_limits: RateLimitsConfig = field(
        default_factory=RateLimitsConfig,
        metadata={"doc": "Connections, messages and recipients per client per window."},
    )

    def _validate(self) -> None:
        level = self.log_level.lower()
        _expect(self, "log_level", level in LOG_LEVELS, f"one of {', '.join(LOG_LEVELS)}")
        object.__setattr__(self, "log_level", level)
        for name in ("hostname", "ident"):
            _expect(self, name, getattr(self, name) != "", "a non-empty string, or None")
        _expect(self, "maildir", self.maildir != "", "a directory path")
        for name in ("xclient_trusted_networks", "xforward_trusted_networks"):
            _check_networks(self, name)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Self:
        """Load a config from a TOML file, environment variables and overrides.

        Later sources win: overrides > environment > file > defaults.

        Args:
            path: the TOML file; None reads the file named by ``SMTPKIT_CONFIG`` if set,
                else no file.
            env: the environment to read ``SMTPKIT_…`` variables from (default ``os.environ``).
            overrides: settings by dotted path (``{"limits.data_size": 10}``), typically from
                command-line flags; a section name may map to a table of its settings.

        Returns:
            The validated config.

        Raises:
            ConfigError: the file cannot be read or parsed, a key or variable is unknown, or a
                value is invalid; the message starts with the source at fault.
        """
        environ = os.environ if env is None else env
        if path is None:
            path = environ.get(ENV_CONFIG_FILE) or None
        sources = _Sources(ServerConfig)
        if path is not None:
            sources.add_file(os.fspath(path))
        sources.add_env(environ)
        sources.add_overrides(overrides or {})
        try:
            return msgspec.convert(sources.merged, type=cls)
        except msgspec.ValidationError as exc:
            raise sources.explain(exc) from exc

    def to_smtp_kwargs(self) -> dict[str, Any]:
        """Return the keyword arguments of ``smtpkit.smtp.SMTP`` that this config sets.

        ``tls_context`` is built by :meth:`TLSConfig.server_context`, except with implicit TLS,
        where it is None: the listening socket does TLS instead of STARTTLS.

        Returns:
            The documented ``SMTP`` arguments plus smtpkit's own limits (``max_recipients``,
            ``line_length_limit``, ``tls_handshake_timeout``, …); no handler, loop or
            authenticator.

        Raises:
            ConfigError: the certificate files cannot be loaded.
        """
        kwargs = {name: self._get(path) for name, path in _SMTP_KWARGS.items()}
        kwargs["tls_context"] = None if self.tls.implicit else self.tls.server_context()
        if isinstance(self.limits.command_call_limit, dict):
            kwargs["command_call_limit"] = dict(self.limits.command_call_limit)
        return kwargs

    @classmethod
    def from_smtp_kwargs(cls, **kwargs: Any) -> Self:
        """Build a config from ``SMTP(...)`` keyword arguments (the inverse of to_smtp_kwargs).

        ``handler``, ``loop``, ``authenticator`` and ``auth_callback`` are accepted and ignored:
        they are objects, not configuration. ``tls_context`` becomes ``tls.context``.

        Args:
            **kwargs: the arguments, by their ``SMTP`` names.

        Returns:
            A config with defaults for everything not given.

        Raises:
            TypeError: an argument ``SMTP`` does not take.
            ConfigError: an invalid value (a :class:`ConfigTypeError`, also a TypeError, for a
                wrong type).
        """
        changes: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in _NOT_CONFIG:
                continue
            if name not in _SMTP_KWARGS:
                hint = _did_you_mean(name, [*_SMTP_KWARGS, *_NOT_CONFIG])
                raise TypeError(f"SMTP got an unexpected keyword argument {name!r}{hint}")
            changes[_SMTP_KWARGS[name]] = _from_smtp_value(name, value)
        return cls().replace(**changes)

    def _get(self, path: str) -> Any:
        value: Any = self
        for name in path.split("."):
            value = getattr(value, name)
        return value


def config_fields() -> list[tuple[str, str, Any, str]]:
    """List every setting of :class:`ServerConfig`, sections flattened.

    Returns:
        ``(dotted path, type as written in the annotation, default, one-line doc)`` per
        setting, in declaration order.
    """
    return [
        (path, str(f.type), _default(f), f.metadata["doc"]) for path, f, _ in _leaves(ServerConfig)
    ]


def parse_setting(path: str, text: str) -> Any:
    """Convert the text form of a setting (an env var or a command-line flag) to its type.

    ``true``/``false``/``1``/``0`` for booleans; ``""``, ``none`` or ``null`` for None where
    allowed; comma-separated items for tuples; ``VERB=N,…`` for a ``command_call_limit`` table.

    Args:
        path: the setting's dotted path, such as ``"limits.data_size"``.
        text: the value as text.

    Returns:
        The value, of the setting's type (range checks happen when the config is built).

    Raises:
        ConfigError: an unknown path, a setting that cannot be given as text, or text that
            does not convert (msgspec's message, with the path).
    """
    return _parse_setting(ServerConfig, path, text)
