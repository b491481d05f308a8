"""The settings of one server class and configuration, validated and derived once.

Every connection of a server has the same settings: the keywords given to
``SMTP(...)`` (or a :class:`~smtpkit.config.ServerConfig`), the class's own
limits, and what follows from them (the command limits, the read limit, the
parsed trusted networks, the TLS context, the AUTH mechanisms offered). They
are checked and worked out once, into a frozen :class:`Settings`, and each
connection takes a reference to it.

The values are checked with the same rules as ``ServerConfig``
(:mod:`smtpkit._rules`), so ``SMTP(h, timeout=0)`` is refused like
``limits.timeout = 0``.

``SMTP(...)`` finds its settings in a cache keyed by the class, the handler's
class, the configuration object and the keyword values. Each class's cache
hangs on a weak reference to the class (classes that an App compiles at run
time can be collected), and is cleared when it grows past :data:`_PER_CLASS`.
Unhashable keyword values (a ``command_call_limit`` dict, a list of
networks) are keyed by their contents; other unhashable objects by identity,
and the settings keep a reference to them so that identity stays theirs.
"""

from __future__ import annotations

import functools
import logging
import operator
import socket
import ssl
import warnings
import weakref
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _rules
from ._commands import check_ehlo_hook
from ._constants import AUTH_LINE_LIMIT
from ._replies import GREETING, Reply
from ._version import __version__
from .auth._command import _Mechanism, _offered, login_always_fail

log = logging.getLogger("smtpkit.smtp")

__all__ = ["KEYWORDS", "Settings", "settings_for"]

IDENT = f"smtpkit {__version__}"
CALL_LIMIT_DEFAULT = 20

#: The keyword arguments of ``SMTP.__init__`` that become settings, in order.
KEYWORDS = (
    "data_size_limit",
    "enable_SMTPUTF8",
    "decode_data",
    "hostname",
    "ident",
    "tls_context",
    "require_starttls",
    "timeout",
    "auth_required",
    "auth_require_tls",
    "auth_exclude_mechanism",
    "auth_callback",
    "command_call_limit",
    "authenticator",
    "proxy_protocol_timeout",
)

#: smtpkit's own keywords, which default to (and may set) class attributes.
EXTRA_NAMES = frozenset(
    {
        "max_recipients",
        "max_unknown_commands",
        "max_auth_failures",
        "data_min_rate",
        "data_rate_window",
        "command_size_limit",
        "line_length_limit",
        "local_part_limit",
        "tls_handshake_timeout",
        "proxy_trusted_networks",
        "connection_limiter",
        "enhanced_status_codes",
        "chunking",
        "dsn",
        "received_header",
        "xclient_trusted_networks",
        "xforward_trusted_networks",
        "limits_extension",
        "max_messages_per_session",
        "requiretls",
    }
)
_CLASS_NAMES = tuple(sorted(EXTRA_NAMES))
# The keywords whose values may be numbers (settings_for keys them by type too).
assert [KEYWORDS[i] for i in (0, 1, 2, 6, 7, 8, 9, 12, 14)] == [
    "data_size_limit",
    "enable_SMTPUTF8",
    "decode_data",
    "require_starttls",
    "timeout",
    "auth_required",
    "auth_require_tls",
    "command_call_limit",
    "proxy_protocol_timeout",
]
_class_values = operator.attrgetter(*_CLASS_NAMES)

_INT = "an integer"
_NUMBER = "a number"
#: keyword -> (rule, integer only, None allowed)
_NUMBER_RULES: dict[str, tuple[_rules.Rule, bool, bool]] = {
    "data_size_limit": (_rules.NOT_NEGATIVE, True, True),
    "timeout": (_rules.SECONDS, False, False),
    "proxy_protocol_timeout": (_rules.OPTIONAL_SECONDS, False, True),
    "max_recipients": (_rules.RECIPIENTS, True, False),
    "max_unknown_commands": (_rules.AT_LEAST_ONE, True, False),
    "max_auth_failures": (_rules.AT_LEAST_ONE, True, False),
    "data_min_rate": (_rules.NOT_NEGATIVE, True, False),
    "data_rate_window": (_rules.SECONDS, False, False),
    "command_size_limit": (_rules.AT_LEAST_ONE, True, False),
    "line_length_limit": (_rules.AT_LEAST_ONE, True, False),
    "local_part_limit": (_rules.NOT_NEGATIVE, True, False),
    "tls_handshake_timeout": (_rules.SECONDS, False, False),
    "max_messages_per_session": (_rules.NOT_NEGATIVE, True, True),
}


@dataclass(frozen=True, slots=True, eq=False)
class Settings:
    """Everything a connection of one server class and configuration reads."""

    hostname: str
    ident: str
    #: The greeting of ``hostname`` and ``ident`` (filled once, not per connection).
    greeting: Reply
    data_size_limit: int | None
    enable_SMTPUTF8: bool
    decode_data: bool
    tls_context: ssl.SSLContext | None
    require_starttls: bool
    #: Seconds a client may stay idle (``timeout``).
    timeout: float
    proxy_timeout: float | None
    #: ``proxy_trusted_networks``, parsed.
    trusted_networks: tuple[Any, ...]
    #: Calls allowed per verb (``"*"`` for the others), or None for no limit.
    call_limits: Mapping[str, int] | None
    command_size_limits: dict[str, int]
    #: The longest line the command loop buffers before throwing it away.
    read_limit: int
    #: The longest a connection may wait for the clock to look at it.
    tick: float
    max_unknown_commands: int
    data_min_rate: int
    data_rate_window: float
    auth_required: bool
    auth_require_tls: bool
    authenticator: Callable[..., Any] | None
    auth_callback: Callable[..., Any] | None
    auth_methods: dict[str, _Mechanism]
    #: Keyword values that set a documented attribute of the instance.
    instance_values: tuple[tuple[str, Any], ...]
    #: Warnings each ``SMTP(...)`` with these settings gives again.
    warnings: tuple[tuple[str, type[Warning]], ...]
    #: Objects whose identity is part of the cache key (kept alive with it).
    keep: tuple[Any, ...] = ()
    #: ``xclient_trusted_networks`` and ``xforward_trusted_networks``, parsed.
    xclient_networks: tuple[Any, ...] = ()
    xforward_networks: tuple[Any, ...] = ()


_Cache = dict[Hashable, Settings]
# id(class) -> (a weak reference to the class, its cache); the reference's
# callback drops the entry when the class goes.
_caches: dict[int, tuple[weakref.ref[type], _Cache]] = {}
#: Settings kept per class; past it the class's cache starts again.
_PER_CLASS = 64


def settings_for(
    cls: type,
    handler: Any,
    values: tuple[Any, ...],
    extras: dict[str, Any],
    config: Any,
) -> Settings:
    """The settings of ``cls(handler, **keywords)``, from the cache or built now.

    Args:
        cls: the server class (its class attributes are defaults).
        handler: the handler (its class decides the AUTH mechanisms).
        values: the values of :data:`KEYWORDS`, in that order.
        extras: smtpkit's own keywords (:data:`EXTRA_NAMES`).
        config: a ``ServerConfig``, or None.

    Raises:
        TypeError: an unknown keyword, or a value of the wrong type.
        ValueError: a value out of its range.
    """
    if "handle_EHLO" in getattr(handler, "__dict__", ()):
        check_ehlo_hook(handler)  # set on the instance: the class says nothing
    # Equal values of another type (1, 1.0, True) must not share settings:
    # one is refused or kept as given where the other is not. The values that
    # may be numbers are keyed with their type (containers' items too, see
    # _hashable); the others are names, objects or None.
    v = values
    key: Hashable = (
        type(handler),
        id(config),
        v,
        (
            type(v[0]),
            type(v[1]),
            type(v[2]),
            type(v[6]),
            type(v[7]),
            type(v[8]),
            type(v[9]),
            type(v[12]),
            type(v[14]),
        ),
        _class_values(cls),
        (tuple(extras.items()), tuple(map(type, extras.values()))) if extras else (),
    )
    cache = _cache_of(cls)
    try:
        found = cache.get(key)
    except TypeError:  # an unhashable value: key it by its contents
        key = _hashable(key)
        found = cache.get(key)
    if found is not None and (config is None or found.keep[0] is config):
        return found
    settings = _build(cls, handler, dict(zip(KEYWORDS, values, strict=True)), extras, config)
    if len(cache) >= _PER_CLASS:
        cache.clear()
    cache[key] = settings
    return settings


def _cache_of(cls: type) -> _Cache:
    entry = _caches.get(id(cls))
    if entry is not None and entry[0]() is cls:
        return entry[1]
    cache: _Cache = {}
    ident = id(cls)
    _caches[ident] = (weakref.ref(cls, lambda _: _caches.pop(ident, None)), cache)
    return cache


def _hashable(value: Any) -> Hashable:
    """A hashable stand-in for ``value``: contents for containers, else identity."""
    if isinstance(value, tuple):
        return tuple(_hashable(item) for item in value)
    if isinstance(value, (list, set, frozenset)):
        items = tuple(_hashable(item) for item in value)
        return (type(value), items if isinstance(value, list) else frozenset(items))
    if isinstance(value, dict):
        return (dict, frozenset((_hashable(k), _hashable(v)) for k, v in value.items()))
    try:
        hash(value)
    except TypeError:
        return (id, id(value))
    return (type(value), value)


# ----------------------------------------------------------------------------
# Building


def _build(
    cls: type,
    handler: Any,
    given: dict[str, Any],
    extras: dict[str, Any],
    config: Any,
) -> Settings:
    check_ehlo_hook(handler)
    # Values keyed by identity must stay alive as long as their key.
    kept = (*given.values(), *extras.values())
    if config is not None:
        given, extras = _merge_config(config, given, extras)
    limits = _limits(cls, extras)
    timeout = _number("timeout", given["timeout"])
    data_size_limit = _number("data_size_limit", given["data_size_limit"])
    tls_context = given["tls_context"]
    if tls_context is not None:
        _warn_tls_context(tls_context)
    auth, auth_warnings = _auth(cls, handler, given)
    hostname, ident = given["hostname"] or _fqdn(), given["ident"] or IDENT
    return Settings(
        hostname=hostname,
        ident=ident,
        greeting=GREETING.fill(hostname=hostname, ident=ident),
        data_size_limit=data_size_limit,
        enable_SMTPUTF8=given["enable_SMTPUTF8"],
        decode_data=given["decode_data"],
        tls_context=tls_context,
        require_starttls=bool(tls_context and given["require_starttls"]),
        timeout=timeout,
        proxy_timeout=_proxy_timeout(given["proxy_protocol_timeout"]),
        trusted_networks=_networks(limits["proxy_trusted_networks"]),
        xclient_networks=_networks(limits["xclient_trusted_networks"], "xclient"),
        xforward_networks=_networks(limits["xforward_trusted_networks"], "xforward"),
        call_limits=_call_limits(given["command_call_limit"]),
        **_line_limits(limits, data_size_limit, given["enable_SMTPUTF8"]),
        tick=min(timeout, limits["data_rate_window"]) if limits["data_min_rate"] else timeout,
        max_unknown_commands=limits["max_unknown_commands"],
        data_min_rate=limits["data_min_rate"],
        data_rate_window=limits["data_rate_window"],
        instance_values=tuple(
            (name, value)
            for name, value in extras.items()
            if value is not None and getattr(cls, name) != value
        ),
        warnings=auth_warnings,
        keep=(config, *kept),
        **auth,
    )


def _line_limits(limits: dict[str, Any], data_size_limit: Any, utf8: bool) -> dict[str, Any]:
    """The longest command line per verb, and the longest line the loop buffers."""
    # RFC 1870 and RFC 6531 let MAIL grow by their parameters, once; RFC 3461
    # §5 lets MAIL grow by 100 octets (RET, ENVID) and RCPT by 500 (NOTIFY, ORCPT).
    dsn = 100 if limits["dsn"] else 0
    extra = (26 if data_size_limit else 0) + (10 if utf8 else 0) + dsn
    base = limits["command_size_limit"]
    command_limits = _command_limits(base + extra, base + 5 * dsn if dsn else 0)
    read_limit = max(limits["line_length_limit"], AUTH_LINE_LIMIT + 2, *command_limits.values())
    return {"command_size_limits": command_limits, "read_limit": read_limit}


_DEFAULTS: dict[str, Any] = {}


def set_defaults(defaults: Mapping[str, Any]) -> None:
    """Record the defaults of ``SMTP.__init__``'s keywords (a config's values win over them)."""
    _DEFAULTS.update(defaults)


def _merge_config(
    config: Any, given: dict[str, Any], extras: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A config's values, overridden by keywords that differ from their default."""
    merged = config.to_smtp_kwargs()
    if "command_length_limit" in merged:
        merged["command_size_limit"] = merged.pop("command_length_limit")
    for name, value in given.items():
        default = _DEFAULTS.get(name)
        if name not in merged or (value is not default and value != default):
            merged[name] = value
    new_given = {name: merged.pop(name) for name in KEYWORDS}
    for name, value in extras.items():
        if value is not None:
            merged[name] = value
    return new_given, merged


def _limits(cls: type, extras: dict[str, Any]) -> dict[str, Any]:
    """The class's limits, with the keywords given, each checked."""
    if "command_length_limit" in extras:
        # "command_length_limit" is the config's name of command_size_limit.
        extras["command_size_limit"] = extras.pop("command_length_limit")
    unknown = set(extras) - EXTRA_NAMES
    if unknown:
        names = ", ".join(sorted(unknown))
        raise TypeError(f"SMTP() got unexpected keyword argument(s): {names}")
    limits = dict(zip(_CLASS_NAMES, _class_values(cls), strict=True))
    limits.update((name, value) for name, value in extras.items() if value is not None)
    for name, value in limits.items():
        if name in _NUMBER_RULES:
            limits[name] = _number(name, value)
    for name in _SWITCHES:
        if not isinstance(limits[name], bool):
            raise TypeError(f"{name} = {limits[name]!r}: expected True or False")
    return limits


_SWITCHES = (
    "enhanced_status_codes",
    "chunking",
    "dsn",
    "received_header",
    "limits_extension",
    "requiretls",
)


def _number(name: str, value: Any) -> Any:
    """Check a numeric setting against its rule; return it unchanged."""
    rule, integer, optional = _NUMBER_RULES[name]
    if value is None and optional:
        return None
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        expected = _INT if integer else _NUMBER
        raise TypeError(f"{name} = {value!r}: expected {expected}{', or None' * optional}")
    if not rule.ok(value):
        raise ValueError(f"{name} = {value!r}: expected {rule.expected}")
    return value


def _proxy_timeout(value: Any) -> float | None:
    value = _number("proxy_protocol_timeout", value)
    if value is None:
        return None
    if value < 3.0:
        log.warning("proxy_protocol_timeout is %s s; under 3 s may cut off slow proxies", value)
    return float(value)


def _call_limits(limit: Any) -> Mapping[str, int] | None:
    if limit is None:
        return None
    name = "command_call_limit"
    if isinstance(limit, int) and not isinstance(limit, bool):
        if not _rules.CALL_LIMIT.ok(limit):
            raise ValueError(f"{name} = {limit!r}: expected {_rules.CALL_LIMIT.expected}")
        return {"*": limit}
    if isinstance(limit, dict):
        bad = {
            k: v
            for k, v in limit.items()
            if not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool)
        }
        if bad:
            raise TypeError(f"{name} values must be int, keyed by verb; got {bad!r}")
        if not _rules.CALL_LIMIT_TABLE.ok(limit):
            raise ValueError(f"{name} = {limit!r}: expected {_rules.CALL_LIMIT_TABLE.expected}")
        return {"*": CALL_LIMIT_DEFAULT, **{k.upper(): v for k, v in limit.items()}}
    raise TypeError(f"{name} must be int or dict[str, int], not {type(limit).__name__}")


def _networks(networks: Any, kind: str = "proxy") -> tuple[Any, ...]:
    """Parse the trusted networks: a bad one fails at construction, not per connection."""
    if isinstance(networks, str):
        raise TypeError(
            f"{kind}_trusted_networks must be a list of CIDR networks, not the string {networks!r}"
        )
    if not networks:
        return ()
    from .proxy_protocol import parse_networks

    return parse_networks(networks)


def _auth(cls: type, handler: Any, given: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The AUTH settings, and the warnings each construction gives."""
    required, require_tls = given["auth_required"], given["auth_require_tls"]
    found: list[tuple[str, type[Warning]]] = []
    if required and not require_tls:
        message = "auth_required=True with auth_require_tls=False lets clients send "
        found.append((message + "passwords in clear text", UserWarning))
    authenticator, callback = given["authenticator"], given["auth_callback"]
    if authenticator is not None:
        callback = None
    else:
        if callback is not None:
            found.append(("auth_callback is deprecated; use authenticator", DeprecationWarning))
        callback = callback or login_always_fail
    excluded = _excluded(given["auth_exclude_mechanism"])
    values = {
        "auth_required": required,
        "auth_require_tls": require_tls,
        "authenticator": authenticator,
        "auth_callback": callback,
        "auth_methods": _offered(cls, type(handler), excluded),
    }
    return values, tuple(found)


def _excluded(names: Iterable[str] | str | None) -> frozenset[str]:
    if isinstance(names, str):
        names = (names,)
    listed = tuple(names or ())
    if not _rules.MECHANISM_NAMES.ok(listed):
        rule = _rules.MECHANISM_NAMES
        raise ValueError(f"auth_exclude_mechanism = {listed!r}: expected {rule.expected}")
    return frozenset(name.upper() for name in listed)


@functools.lru_cache(maxsize=64)
def _command_limits(mail_limit: int, rcpt_limit: int = 0) -> dict[str, int]:
    # Shared by every connection with the same limits (never changed).
    limits = {"MAIL": mail_limit, "AUTH": AUTH_LINE_LIMIT}
    if rcpt_limit:
        limits["RCPT"] = rcpt_limit
    return limits


@functools.lru_cache(maxsize=1)
def _fqdn() -> str:
    # socket.getfqdn() may consult DNS: do it once per process, not per connection.
    return socket.getfqdn()


# TLS contexts already warned about (the warnings are given once per context).
_warned_contexts: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()


def _warn_tls_context(context: ssl.SSLContext) -> None:
    """Warn, as aiosmtpd does, about a context that checks client certificates."""
    if context in _warned_contexts:
        return
    _warned_contexts.add(context)
    if context.verify_mode not in {ssl.CERT_NONE, ssl.CERT_OPTIONAL}:
        log.warning(
            "tls_context.verify_mode not in {CERT_NONE, CERT_OPTIONAL}; "
            "this might cause client connection problems"
        )
    elif context.check_hostname:
        log.warning(
            "tls_context.check_hostname == True; this might cause client connection problems"
        )


def give_warnings(settings: Settings, stacklevel: int) -> None:
    """Give the warnings of ``settings`` again (each construction gives them)."""
    for message, category in settings.warnings:
        warnings.warn(message, category, stacklevel=stacklevel + 1)
