"""The shared base of every configuration section: errors, type and range checks, redaction.

:class:`_Section` gives each section dataclass its type check (msgspec's, with the setting's
dotted path in the message), its ``_validate`` hook for ranges and rules between fields, a
``repr`` that hides secrets and ``replace()``. The helpers here (``_expect``,
``_check_networks``, ``_did_you_mean``, ``_shown``) are what the sections, the loader and the
``SMTP`` bridge build their messages from. This module imports nothing else of smtpkit.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, NoReturn, get_args, get_origin, get_type_hints

import msgspec
from typing_extensions import Self

_SECRET_WORDS = ("password", "secret", "token")
_REDACTED = "'***'"


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
