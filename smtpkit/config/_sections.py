"""The configuration sections: one frozen dataclass per concern of the server.

``listen``, ``limits``, ``tls``, ``auth``, ``proxy_protocol``, ``workers`` and
``rate_limits``: each class declares its settings (type, default and the one-line doc that
the settings table and ``smtpkit config`` show) and its own range and cross-field rules.
:class:`TLSConfig` also builds the server's SSLContext from its files. The whole tree,
:class:`~smtpkit.config.ServerConfig`, lives in ``_server``.
"""

from __future__ import annotations

import ipaddress
import ssl
from dataclasses import dataclass, field
from typing import ClassVar, NoReturn

from ..ratelimit import RateStore
from ._base import ConfigError, _expect, _Section

__all__ = [
    "AuthConfig",
    "LimitsConfig",
    "ListenConfig",
    "ProxyProtocolConfig",
    "RateLimitsConfig",
    "TLSConfig",
    "WorkersConfig",
]


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class ListenConfig(_Section):
    """Where the server accepts connections."""

    _prefix: ClassVar[str] = "listen."

    host: str = field(
        default="127.0.0.1",
        metadata={"doc": "Address to bind; `0.0.0.0` or `::` accept from every interface."},
    )
    port: int = field(
        default=8025, metadata={"doc": "TCP port to bind; 0 lets the system pick a free one."}
    )
    unix_socket: str | None = field(
        default=None,
        metadata={"doc": "Path of a Unix socket to listen on instead of host and port."},
    )
    backlog: int = field(
        default=100, metadata={"doc": "Queue length for connections not yet accepted."}
    )
    reuse_port: bool = field(
        default=False,
        metadata={"doc": "Set SO_REUSEPORT so several processes can share the port."},
    )

    def _validate(self) -> None:
        _expect(self, "port", 0 <= self.port <= 65535, "a port number from 0 to 65535")
        _expect(self, "backlog", self.backlog >= 0, "an integer >= 0")
        _expect(self, "unix_socket", self.unix_socket != "", "a socket path, or None")


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class LimitsConfig(_Section):
    """Sizes, counts, rates and timeouts that bound what one client may use."""

    _prefix: ClassVar[str] = "limits."

    data_size: int = field(
        default=33_554_432,
        metadata={"doc": "Largest message accepted, in bytes (advertised as SIZE); 0 = no limit."},
    )
    line_length: int = field(
        default=1001,
        metadata={"doc": "Longest text line accepted in DATA, in bytes, CRLF included."},
    )
    command_length: int = field(
        default=512,
        metadata={"doc": "Longest command line, in bytes, before ESMTP parameter allowances."},
    )
    local_part: int = field(
        default=0,
        metadata={"doc": "Longest local part of an address, in bytes; 0 = no limit."},
    )
    max_recipients: int = field(
        default=1000,
        metadata={"doc": "Most RCPT TO accepted per message; at least 100 (RFC 5321 4.5.3.1.8)."},
    )
    max_connections: int | None = field(
        default=1000,
        metadata={"doc": "Most connections open at once, in total; 0 or unset = no limit."},
    )
    max_connections_per_ip: int | None = field(
        default=50,
        metadata={
            "doc": "Most connections open at once from one client address; 0 or unset = no limit."
        },
    )
    command_call_limit: int | dict[str, int] | None = field(
        default=None,
        metadata={
            "doc": "Calls allowed per command per connection: one number for all, or a table "
            'by verb with `"*"` for the rest; unset = no limit.'
        },
    )
    timeout: float = field(
        default=300.0,
        metadata={"doc": "Seconds a client may stay idle between commands before disconnection."},
    )
    max_unknown_commands: int = field(
        default=5,
        metadata={"doc": "Unrecognised commands tolerated before the connection is closed."},
    )
    data_min_rate: int = field(
        default=1024,
        metadata={
            "doc": "Slowest DATA transfer accepted, in bytes per second averaged over "
            "data_rate_window; 0 = no minimum."
        },
    )
    data_rate_window: float = field(
        default=30.0,
        metadata={"doc": "Seconds over which the DATA transfer rate is averaged."},
    )
    max_auth_failures: int = field(
        default=3,
        metadata={"doc": "Failed AUTH attempts tolerated before the connection is closed."},
    )
    max_messages_per_session: int = field(
        default=0,
        metadata={
            "doc": "Messages one session may send (advertised as LIMITS MAILMAX); after the "
            "reply to the last, 421 4.7.0 and the connection closes; 0 = no limit."
        },
    )

    def _validate(self) -> None:
        for name in ("data_size", "local_part", "data_min_rate", "max_messages_per_session"):
            _expect(self, name, getattr(self, name) >= 0, "an integer >= 0 (0 = no limit)")
        for name in ("line_length", "command_length", "max_unknown_commands", "max_auth_failures"):
            _expect(self, name, getattr(self, name) >= 1, "an integer >= 1")
        for name in ("max_connections", "max_connections_per_ip"):
            # TOML has no null, so 0 also means "no limit"; it is stored as None.
            value = getattr(self, name)
            _expect(self, name, value is None or value >= 0, "an integer >= 1, or 0 for no limit")
            if value == 0:
                object.__setattr__(self, name, None)
        _expect(
            self,
            "max_recipients",
            self.max_recipients >= 100,
            "an integer >= 100 (RFC 5321 4.5.3.1.8 requires room for 100 recipients)",
        )
        _expect(self, "timeout", self.timeout > 0, "a number of seconds > 0")
        _expect(self, "data_rate_window", self.data_rate_window > 0, "a number of seconds > 0")
        self._validate_call_limit()

    def _validate_call_limit(self) -> None:
        limit = self.command_call_limit
        if isinstance(limit, int):
            _expect(self, "command_call_limit", limit >= 1, "an integer >= 1")
        elif isinstance(limit, dict):
            ok = all(key and value >= 1 for key, value in limit.items())
            _expect(self, "command_call_limit", ok, "verbs (or '*') mapped to integers >= 1")


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class TLSConfig(_Section):
    """Certificates and the TLS policy (STARTTLS, or implicit TLS on the listening socket)."""

    _prefix: ClassVar[str] = "tls."

    cert_file: str | None = field(
        default=None,
        metadata={
            "doc": "PEM certificate chain; may hold the private key too. Unset = no TLS "
            "(STARTTLS not offered)."
        },
    )
    key_file: str | None = field(
        default=None,
        metadata={"doc": "PEM private key, when it is not in cert_file."},
    )
    key_password: str | None = field(
        default=None,
        metadata={"doc": "Password of an encrypted private key; never shown in repr."},
    )
    implicit: bool = field(
        default=False,
        metadata={"doc": "Speak TLS from the first byte (port 465 style) instead of STARTTLS."},
    )
    require_starttls: bool = field(
        default=False,
        metadata={"doc": "Refuse commands other than EHLO, NOOP, STARTTLS and QUIT before TLS."},
    )
    handshake_timeout: float = field(
        default=30.0,
        metadata={"doc": "Seconds allowed for a TLS handshake to complete."},
    )
    context: ssl.SSLContext | None = field(
        default=None,
        metadata={
            "doc": "A ready SSLContext to use instead of the files (Python only; the "
            "tls_context argument of SMTP).",
            "python_only": True,
        },
    )

    def _validate(self) -> None:
        has_cert = self.cert_file is not None or self.context is not None
        for name in ("cert_file", "key_file"):
            _expect(self, name, getattr(self, name) != "", "a file path, or None")
        _expect(
            self,
            "key_file",
            not self.key_file or bool(self.cert_file),
            "tls.cert_file to be set as well (the certificate this key belongs to)",
        )
        _expect(
            self,
            "key_password",
            not self.key_password or bool(self.cert_file),
            "tls.cert_file to be set (the password decrypts its private key)",
        )
        _expect(
            self,
            "context",
            not (self.context and self.cert_file),
            "None when tls.cert_file is set (give one or the other)",
        )
        _expect(
            self,
            "implicit",
            has_cert or not self.implicit,
            "tls.cert_file to be set (implicit TLS needs a certificate)",
        )
        _expect(
            self,
            "require_starttls",
            not (self.implicit and self.require_starttls),
            "False with tls.implicit (the connection is already encrypted)",
        )
        _expect(self, "handshake_timeout", self.handshake_timeout > 0, "a number of seconds > 0")

    def server_context(self) -> ssl.SSLContext | None:
        """Build the server-side SSLContext from the certificate files.

        The context accepts TLS 1.2 and later, with the standard library's secure defaults.

        Returns:
            ``context`` when one was given, a new context when ``cert_file`` is set, else None.

        Raises:
            ConfigError: a file is missing or unreadable, is not PEM, the key does not match
                the certificate, or the key is encrypted and the password is missing or wrong.
        """
        if self.context is not None or self.cert_file is None:
            return self.context
        _check_readable(self, "cert_file")
        if self.key_file is not None:
            _check_readable(self, "key_file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert_file, self.key_file, self.key_password or _no_pass)
        except ssl.SSLError as exc:
            raise ConfigError(_load_failure(self, exc), path="tls.cert_file") from exc
        return context


def _check_readable(tls: TLSConfig, name: str) -> None:
    path = getattr(tls, name)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        message = f"tls.{name} = {path!r}: cannot read the file ({reason})"
        raise ConfigError(message, path=f"tls.{name}") from exc


def _no_pass() -> NoReturn:
    raise ConfigError(
        "tls.key_password = None: the private key is encrypted; expected its password",
        path="tls.key_password",
    )


def _load_failure(tls: TLSConfig, exc: ssl.SSLError) -> str:
    where = f"tls.cert_file = {tls.cert_file!r}"
    if tls.key_file is not None:
        where += f", tls.key_file = {tls.key_file!r}"
    hint = " and tls.key_password the key's password" if tls.key_password else ""
    return (
        f"{where}: cannot load the certificate and key ({exc}); expected PEM files "
        f"with a private key matching the certificate{hint}"
    )


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class AuthConfig(_Section):
    """SMTP AUTH policy."""

    _prefix: ClassVar[str] = "auth."

    required: bool = field(
        default=False,
        metadata={"doc": "Require a successful AUTH before MAIL, RCPT and DATA."},
    )
    require_tls: bool = field(
        default=True,
        metadata={"doc": "Offer and accept AUTH only over TLS."},
    )
    exclude_mechanisms: tuple[str, ...] = field(
        default=(),
        metadata={"doc": "AUTH mechanisms not to offer, such as `LOGIN` (case-insensitive)."},
    )

    def _validate(self) -> None:
        names = self.exclude_mechanisms
        _expect(self, "exclude_mechanisms", all(names), "mechanism names (not empty strings)")
        object.__setattr__(self, "exclude_mechanisms", tuple(name.upper() for name in names))


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class ProxyProtocolConfig(_Section):
    """PROXY protocol (v1 and v2) from a load balancer in front of the server."""

    _prefix: ClassVar[str] = "proxy_protocol."

    timeout: float | None = field(
        default=None,
        metadata={"doc": "Seconds to wait for the PROXY header; unset = PROXY protocol off."},
    )
    trusted_networks: tuple[str, ...] = field(
        default=(),
        metadata={
            "doc": "CIDR networks allowed to send a PROXY header; empty = any peer (once on)."
        },
    )

    def _validate(self) -> None:
        timeout = self.timeout
        _expect(self, "timeout", timeout is None or timeout > 0, "seconds > 0, or None (off)")
        for network in self.trusted_networks:
            try:
                ipaddress.ip_network(network)
            except ValueError as exc:
                path = "proxy_protocol.trusted_networks"
                raise ConfigError(
                    f"{path} = {self.trusted_networks!r}: expected CIDR networks such as "
                    f"'10.0.0.0/8' or '2001:db8::/32' ({exc})",
                    path=path,
                ) from exc


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class WorkersConfig(_Section):
    """Worker processes sharing the listening port."""

    _prefix: ClassVar[str] = "workers."

    count: int = field(
        default=1,
        metadata={"doc": "Number of server processes; above 1 they share the port (SO_REUSEPORT)."},
    )
    graceful_timeout: float = field(
        default=30.0,
        metadata={
            "doc": "Seconds a command in progress (a DATA transfer, a slow hook) gets to "
            "finish on shutdown; idle sessions are closed at once."
        },
    )

    def _validate(self) -> None:
        _expect(self, "count", self.count >= 1, "an integer >= 1")
        _expect(self, "graceful_timeout", self.graceful_timeout > 0, "a number of seconds > 0")


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class RateLimitsConfig(_Section):
    """Connections, messages and recipients per client address per time window."""

    _prefix: ClassVar[str] = "rate_limits."

    window: float = field(
        default=60.0,
        metadata={"doc": "Seconds over which each rate limit counts."},
    )
    connections: int = field(
        default=0,
        metadata={
            "doc": "Connections one client address may open per window (421 4.7.0 past it); "
            "0 = no limit."
        },
    )
    messages: int = field(
        default=0,
        metadata={
            "doc": "MAIL commands one client address may send per window (450 4.7.1 past it); "
            "0 = no limit."
        },
    )
    recipients: int = field(
        default=0,
        metadata={
            "doc": "RCPT commands one client address may send per window (450 4.7.1 past it); "
            "0 = no limit."
        },
    )
    store: RateStore | None = field(
        default=None,
        metadata={
            "doc": "Where the counts are kept: an object with hit(key, window, limit) "
            "(Python only); unset = in this process's memory.",
            "python_only": True,
        },
    )

    def _validate(self) -> None:
        _expect(self, "window", self.window > 0, "a number of seconds > 0")
        for name in ("connections", "messages", "recipients"):
            _expect(self, name, getattr(self, name) >= 0, "an integer >= 1, or 0 for no limit")
