"""Typed server configuration: the settings, their validation and the loader.

A :class:`ServerConfig` is a tree of frozen, keyword-only dataclasses, one per concern
(``listen``, ``limits``, ``tls``, ``auth``, ``proxy_protocol``, ``workers``). Build one in
Python, or let :meth:`ServerConfig.load` read it from a TOML file, ``SMTPKIT_…`` environment
variables and explicit overrides (in rising order of precedence).

Every value is checked when a config is built, whatever the source: a wrong type or an
out-of-range value raises :class:`ConfigError` naming the setting's dotted path, the value and
what was expected. Loading adds the source (file name, environment variable or override) in
front of the message.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import os
import ssl
import types
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NoReturn, Union, get_args, get_origin, get_type_hints

import msgspec
import msgspec.toml
from typing_extensions import Self

from .ratelimit import RateStore

__all__ = [
    "ENV_CONFIG_FILE",
    "ENV_PREFIX",
    "ENV_RESERVED",
    "LOG_LEVELS",
    "AuthConfig",
    "ConfigError",
    "ConfigTypeError",
    "LimitsConfig",
    "ListenConfig",
    "ProxyProtocolConfig",
    "RateLimitsConfig",
    "ServerConfig",
    "TLSConfig",
    "WorkersConfig",
    "config_fields",
    "parse_setting",
]

ENV_PREFIX = "SMTPKIT_"
"""Environment variables starting with this prefix are read as settings."""

ENV_CONFIG_FILE = "SMTPKIT_CONFIG"
"""The environment variable naming the TOML file :meth:`ServerConfig.load` reads by default."""

ENV_RESERVED = frozenset(
    {ENV_CONFIG_FILE, "SMTPKIT_APP", "SMTPKIT_HTTP_AUTH", "SMTPKIT_HTTP_RELEASE_TO"}
)
"""``SMTPKIT_`` variables that are not settings and are never reported as unknown."""

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
"""The accepted values of ``log_level`` (case-insensitive; stored in lower case)."""

_SECRET_WORDS = ("password", "secret", "token")
_REDACTED = "'***'"
_NONE_WORDS = ("", "none", "null")


class ConfigError(ValueError):
    """A configuration value, key or file is invalid.

    Attributes:
        path: the dotted path of the setting at fault (``"limits.data_size"``), when one is known.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class ConfigTypeError(ConfigError, TypeError):
    """A setting has the wrong type.

    It is also a :class:`TypeError`, which is what the ``SMTP(...)`` constructor documents for
    arguments of the wrong type (such as a ``command_call_limit`` dict with a non-``int`` value).
    """


# --------------------------------------------------------------------------------------------
# The shared base: type checks, range checks, repr with secrets hidden, replace()
# --------------------------------------------------------------------------------------------


class _Section:
    """Behaviour shared by every configuration dataclass."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    _prefix: ClassVar[str] = ""

    def __post_init__(self) -> None:
        _check_types(self)
        self._validate()

    def _validate(self) -> None:
        """Check ranges and cross-field rules; types are already checked."""

    def __repr__(self) -> str:
        shown = (
            f"{f.name}={_shown(f.name, getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if f.repr
        )
        return f"{type(self).__name__}({', '.join(shown)})"

    def replace(self, **changes: Any) -> Self:
        """Return a copy with some settings changed, validated like a new config.

        Args:
            **changes: field names, or dotted paths into nested sections
                (``**{"limits.data_size": 10}``); a whole section may be given too.

        Returns:
            A new config of the same class.

        Raises:
            ConfigError: an unknown name (with a suggestion) or an invalid value.
        """
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        nested: dict[str, dict[str, Any]] = {}
        for key, value in changes.items():
            head, _, rest = key.partition(".")
            _known_field(self, head, key)
            if rest:
                nested.setdefault(head, {})[rest] = value
            else:
                values[head] = value
        for head, sub in nested.items():
            values[head] = _sub_section(self, head, values[head]).replace(**sub)
        return type(self)(**values)


def _known_field(section: _Section, name: str, key: str) -> None:
    names = [f.name for f in dataclasses.fields(section) if f.init]
    if name not in names:
        prefix = section._prefix
        hint = _did_you_mean(prefix + name, [prefix + known for known in names])
        raise ConfigError(f"{prefix}{key}: unknown setting{hint}", path=prefix + key)


def _sub_section(section: _Section, name: str, value: Any) -> _Section:
    if not isinstance(value, _Section):
        path = section._prefix + name
        raise ConfigError(f"{path}: not a section, so it has no settings under it", path=path)
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config class (resolved once per class)."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _check_types(section: _Section) -> None:
    """Check each field against its annotation, storing msgspec's normalised value.

    Normalising turns ``300`` into ``300.0`` for a float, a list into a tuple and copies a dict,
    so a frozen config never shares a mutable value with its caller.
    """
    hints = _hints(type(section))
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        checked = _checked_value(section._prefix + f.name, value, hints[f.name])
        if checked is not value:
            object.__setattr__(section, f.name, checked)


def _checked_value(path: str, value: Any, hint: Any) -> Any:
    if _is_section(hint):
        if not isinstance(value, hint):
            _wrong_type(path, value, f"expected a {hint.__name__}")
        return value
    try:
        return msgspec.convert(value, type=hint)
    except msgspec.ValidationError as exc:
        _wrong_type(path, value, _type_message(exc, hint).replace("`$", f"`$.{path}"))


def _type_message(exc: msgspec.ValidationError, hint: Any) -> str:
    """msgspec's message, except for a Literal, where the choices say more than "invalid"."""
    if get_origin(hint) is Literal:
        return "expected one of " + ", ".join(repr(choice) for choice in get_args(hint))
    return str(exc)


def _wrong_type(path: str, value: Any, expected: str) -> NoReturn:
    leaf = path.rpartition(".")[2]
    expected = expected[:1].lower() + expected[1:]
    raise ConfigTypeError(f"{path} = {_shown(leaf, value)}: {expected}", path=path)


def _check_networks(section: _Section, name: str) -> None:
    """Raise a ConfigError naming ``section.name`` unless every item is a CIDR network."""
    networks = getattr(section, name)
    for network in networks:
        try:
            ipaddress.ip_network(network)
        except ValueError as exc:
            path = section._prefix + name
            raise ConfigError(
                f"{path} = {networks!r}: expected CIDR networks such as "
                f"'10.0.0.0/8' or '2001:db8::/32' ({exc})",
                path=path,
            ) from exc


def _expect(section: _Section, name: str, ok: bool, expected: str) -> None:
    """Raise a ConfigError naming ``section.name``, its value and ``expected`` unless ``ok``."""
    if not ok:
        path = section._prefix + name
        shown = _shown(name, getattr(section, name))
        raise ConfigError(f"{path} = {shown}: expected {expected}", path=path)


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


def _shown(name: str, value: Any) -> str:
    return _REDACTED if value is not None and _is_secret(name) else repr(value)


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, _Section)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f"; did you mean `{close[0]}`?" if close else ""


# --------------------------------------------------------------------------------------------
# The sections
# --------------------------------------------------------------------------------------------


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
        sources = _Sources()
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


_SMTP_KWARGS: dict[str, str] = {
    "data_size_limit": "limits.data_size",
    "enable_SMTPUTF8": "enable_smtputf8",
    "decode_data": "decode_data",
    "enhanced_status_codes": "enhanced_status_codes",
    "chunking": "chunking",
    "dsn": "dsn",
    "received_header": "received_header",
    "limits_extension": "limits_extension",
    "requiretls": "requiretls",
    "xclient_trusted_networks": "xclient_trusted_networks",
    "xforward_trusted_networks": "xforward_trusted_networks",
    "max_messages_per_session": "limits.max_messages_per_session",
    "hostname": "hostname",
    "ident": "ident",
    "tls_context": "tls.context",
    "require_starttls": "tls.require_starttls",
    "timeout": "limits.timeout",
    "auth_required": "auth.required",
    "auth_require_tls": "auth.require_tls",
    "auth_exclude_mechanism": "auth.exclude_mechanisms",
    "command_call_limit": "limits.command_call_limit",
    "proxy_protocol_timeout": "proxy_protocol.timeout",
    "max_recipients": "limits.max_recipients",
    "max_unknown_commands": "limits.max_unknown_commands",
    "max_auth_failures": "limits.max_auth_failures",
    "data_min_rate": "limits.data_min_rate",
    "data_rate_window": "limits.data_rate_window",
    "command_length_limit": "limits.command_length",
    "line_length_limit": "limits.line_length",
    "local_part_limit": "limits.local_part",
    "tls_handshake_timeout": "tls.handshake_timeout",
    "proxy_trusted_networks": "proxy_protocol.trusted_networks",
}
"""``SMTP`` keyword argument -> dotted config path."""

_NOT_CONFIG = ("handler", "loop", "authenticator", "auth_callback")


def _from_smtp_value(name: str, value: Any) -> Any:
    """Map the few ``SMTP`` argument spellings that differ from the config's types."""
    if name == "data_size_limit" and value is None:
        return 0
    if name == "auth_exclude_mechanism":
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)
    return value


# --------------------------------------------------------------------------------------------
# Field listing (for the docs and the CLI) and text parsing (for env vars and flags)
# --------------------------------------------------------------------------------------------


def config_fields() -> list[tuple[str, str, Any, str]]:
    """List every setting of :class:`ServerConfig`, sections flattened.

    Returns:
        ``(dotted path, type as written in the annotation, default, one-line doc)`` per
        setting, in declaration order.
    """
    return [
        (path, str(f.type), _default(f), f.metadata["doc"]) for path, f, _ in _leaves(ServerConfig)
    ]


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if _is_section(hint):
            yield from _leaves(hint, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, f, hint


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


@functools.cache
def _settings() -> dict[str, tuple[Any, bool]]:
    """Dotted path -> (type hint, Python only) for every setting."""
    return {
        path: (hint, bool(f.metadata.get("python_only"))) for path, f, hint in _leaves(ServerConfig)
    }


@functools.cache
def _section_paths() -> frozenset[str]:
    paths = {path.rpartition(".")[0] for path in _settings()}
    return frozenset(paths - {""})


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
    hint = _setting_hint(path)
    try:
        return _parse_text(hint, text)
    except msgspec.ValidationError as exc:
        leaf = path.rpartition(".")[2]
        shown = _REDACTED if _is_secret(leaf) else repr(text)
        message = f"{path} = {shown}: {_type_message(exc, hint)} - at `$.{path}`"
        raise ConfigTypeError(message, path=path) from exc


def _setting_hint(path: str) -> Any:
    settings = _settings()
    if path not in settings:
        kind = "a section" if path in _section_paths() else "an unknown setting"
        hint = _did_you_mean(path, settings) if kind != "a section" else ""
        raise ConfigError(f"{path}: {kind}{hint}", path=path)
    hint, python_only = settings[path]
    if python_only:
        raise ConfigError(f"{path}: can only be set from Python, not from text", path=path)
    return hint


def _parse_text(hint: Any, text: str) -> Any:
    options = _union_members(hint)
    if type(None) in options and text.strip().lower() in _NONE_WORDS:
        return None
    if any(get_origin(option) is tuple for option in options):
        return msgspec.convert(_split_items(text), type=hint, strict=False)
    if any(get_origin(option) is dict for option in options) and "=" in text:
        table = dict(item.partition("=")[::2] for item in _split_items(text))
        return msgspec.convert({k.strip(): v.strip() for k, v in table.items()}, hint, strict=False)
    # Strings are kept as given (a password may end with a space); anything else is trimmed.
    return msgspec.convert(text if str in options else text.strip(), type=hint, strict=False)


def _union_members(hint: Any) -> tuple[Any, ...]:
    return get_args(hint) if get_origin(hint) in (Union, types.UnionType) else (hint,)


def _split_items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


# --------------------------------------------------------------------------------------------
# The loader: file, then environment, then overrides; one strict msgspec.convert at the end
# --------------------------------------------------------------------------------------------


class _Sources:
    """The sources merged into one nested dict, remembering where each setting came from."""

    def __init__(self) -> None:
        self.merged: dict[str, Any] = {}
        self.origins: dict[str, str] = {}

    def add_file(self, path: str) -> None:
        try:
            with open(path, "rb") as file:
                data = msgspec.toml.decode(file.read())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the config file ({exc.strerror})") from exc
        except msgspec.DecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
        _check_keys(data, path, "", python=False)
        _check_types_alone(data, path)
        self._merge(data, path, "")

    def add_env(self, env: Mapping[str, str]) -> None:
        for name in sorted(env):
            if name.startswith(ENV_PREFIX) and name not in ENV_RESERVED:
                path = _env_path(name)
                if path not in _settings():
                    raise _unknown_env(name, path)
                try:
                    value = parse_setting(path, env[name])
                except ConfigError as exc:
                    raise type(exc)(f"{name}: {exc}", path=path) from exc
                self._merge(_nest(path, value), name, "")

    def add_overrides(self, overrides: Mapping[str, Any]) -> None:
        for key, value in overrides.items():
            label = f"override {key!r}"
            _check_keys(_nest(key, value), label, "", python=True)
            self._merge(_nest(key, value), label, "")

    def _merge(self, data: Mapping[str, Any], label: str, prefix: str) -> None:
        target = self.merged
        for name in filter(None, prefix.split(".")):
            target = target[name]
        for key, value in data.items():
            path = prefix + key
            if path in _section_paths() and isinstance(value, Mapping):
                if not isinstance(target.get(key), dict):
                    target[key] = {}
                self._merge(value, label, path + ".")
            else:
                target[key] = value
                self.origins[path] = label

    def explain(self, exc: msgspec.ValidationError) -> ConfigError:
        """Turn msgspec's error into a ConfigError starting with the source at fault."""
        cause = exc.__cause__
        if isinstance(cause, ConfigError):
            return type(cause)(f"{self._origin(cause.path)}: {cause}", path=cause.path)
        path = _error_path(str(exc))
        return ConfigTypeError(f"{self._origin(path)}: {exc}", path=path)

    def _origin(self, path: str | None) -> str:
        if path is None:
            return "configuration"
        if path in self.origins:
            return self.origins[path]
        inside = [label for key, label in self.origins.items() if key.startswith(path + ".")]
        return inside[-1] if inside else "configuration"


def _check_types_alone(data: Mapping[str, Any], path: str) -> None:
    """Check the types of a file's values before the environment or a flag overrides them.

    A value of the wrong type is an error in the file even when a later source replaces
    it. Rules between settings (``tls.key_file`` needs ``tls.cert_file``) wait for the
    merged config, since a later source may complete what the file starts. Each top-level
    key is checked on its own, so that such a rule in one section hides no type error in
    another.
    """
    for key, value in data.items():
        alone = _Sources()
        alone._merge({key: value}, path, "")
        try:
            msgspec.convert(alone.merged, type=ServerConfig)
        except msgspec.ValidationError as exc:
            error = alone.explain(exc)
            if isinstance(error, ConfigTypeError):
                raise error from exc


def _python_only(path: str) -> bool:
    return path in _settings() and _settings()[path][1]


def _nest(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _check_keys(data: Mapping[str, Any], label: str, prefix: str, *, python: bool) -> None:
    """Reject keys that are not settings, at every level, naming the path and a suggestion.

    msgspec ignores unknown keys for dataclasses, so without this a typo would pass silently.
    """
    for key, value in data.items():
        path = prefix + key
        if path in _section_paths():
            if isinstance(value, Mapping):
                _check_keys(value, label, path + ".", python=python)
        elif path not in _settings():
            raise ConfigError(f"{label}: unknown key {key!r} - at `$.{path}`{_suggest(path)}")
        elif _python_only(path) and not python:
            raise ConfigError(f"{label}: {path} can only be set from Python - at `$.{path}`")


def _suggest(path: str) -> str:
    """A did-you-mean for a mistyped key: a sibling first, else the same name elsewhere."""
    prefix, _, key = path.rpartition(".")
    known = [*_settings(), *_section_paths()]
    siblings = [p.rpartition(".")[2] for p in known if p.rpartition(".")[0] == prefix]
    close = difflib.get_close_matches(key, siblings, n=1)
    if close:
        return f"; did you mean `{prefix + '.' if prefix else ''}{close[0]}`?"
    elsewhere = [p for p in known if p.rpartition(".")[2] == key]
    return f"; did you mean `{elsewhere[0]}`?" if elsewhere else ""


def _env_path(name: str) -> str:
    return name[len(ENV_PREFIX) :].lower().replace("__", ".")


def _env_name(path: str) -> str:
    return ENV_PREFIX + path.upper().replace(".", "__")


def _unknown_env(name: str, path: str) -> ConfigError:
    if path in _section_paths():
        return ConfigError(f"{name}: a section; set {_env_name(path)}__<NAME>", path=path)
    names = [_env_name(p) for p in _settings() if not _python_only(p)]
    hint = _did_you_mean(name, [*names, *ENV_RESERVED])
    return ConfigError(f"{name}: unknown environment variable{hint}", path=path)


def _error_path(message: str) -> str | None:
    """The dotted path in msgspec's ``… - at `$.limits.data_size``` suffix, if any."""
    _, marker, where = message.rpartition(" - at `$")
    if not marker:
        return None
    return where.rstrip("`").lstrip(".").split("[")[0] or None
