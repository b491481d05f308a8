"""Loading: a TOML file, then ``SMTPKIT_…`` variables, then overrides, merged and checked.

The settings of a config class as a flat table (dotted path -> type hint), the conversion of
a setting's text form (an environment variable or a command-line flag) to its type, and
:class:`_Sources`, which merges the sources into one nested dict, remembering where each
setting came from, so that the one strict ``msgspec.convert`` at the end can name the source
of a bad value. The functions take the root class (:class:`~smtpkit.config.ServerConfig`) as
an argument, so this module needs only the shared base.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
from collections.abc import Iterator, Mapping
from typing import Any, Union, get_args, get_origin

import msgspec
import msgspec.toml

from ._base import (
    _REDACTED,
    ConfigError,
    ConfigTypeError,
    _did_you_mean,
    _hints,
    _is_secret,
    _is_section,
    _type_message,
)

__all__ = ["ENV_CONFIG_FILE", "ENV_PREFIX", "ENV_RESERVED"]

ENV_PREFIX = "SMTPKIT_"
"""Environment variables starting with this prefix are read as settings."""

ENV_CONFIG_FILE = "SMTPKIT_CONFIG"
"""The environment variable naming the TOML file :meth:`ServerConfig.load` reads by default."""

ENV_RESERVED = frozenset(
    {ENV_CONFIG_FILE, "SMTPKIT_APP", "SMTPKIT_HTTP_AUTH", "SMTPKIT_HTTP_RELEASE_TO"}
)
"""``SMTPKIT_`` variables that are not settings and are never reported as unknown."""

_NONE_WORDS = ("", "none", "null")


# --------------------------------------------------------------------------------------------
# The settings as a flat table (for the docs, the CLI and the loader)
# --------------------------------------------------------------------------------------------


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
def _settings(root: type) -> dict[str, tuple[Any, bool]]:
    """Dotted path -> (type hint, Python only) for every setting."""
    return {path: (hint, bool(f.metadata.get("python_only"))) for path, f, hint in _leaves(root)}


@functools.cache
def _section_paths(root: type) -> frozenset[str]:
    paths = {path.rpartition(".")[0] for path in _settings(root)}
    return frozenset(paths - {""})


# --------------------------------------------------------------------------------------------
# Text parsing (for env vars and flags)
# --------------------------------------------------------------------------------------------


def _parse_setting(root: type, path: str, text: str) -> Any:
    """``parse_setting`` for the settings of ``root``."""
    hint = _setting_hint(root, path)
    try:
        return _parse_text(hint, text)
    except msgspec.ValidationError as exc:
        leaf = path.rpartition(".")[2]
        shown = _REDACTED if _is_secret(leaf) else repr(text)
        message = f"{path} = {shown}: {_type_message(exc, hint)} - at `$.{path}`"
        raise ConfigTypeError(message, path=path) from exc


def _setting_hint(root: type, path: str) -> Any:
    settings = _settings(root)
    if path not in settings:
        kind = "a section" if path in _section_paths(root) else "an unknown setting"
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

    def __init__(self, root: type) -> None:
        self.root = root
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
        _check_keys(self.root, data, path, "", python=False)
        _check_types_alone(self.root, data, path)
        self._merge(data, path, "")

    def add_env(self, env: Mapping[str, str]) -> None:
        for name in sorted(env):
            if name.startswith(ENV_PREFIX) and name not in ENV_RESERVED:
                path = _env_path(name)
                if path not in _settings(self.root):
                    raise _unknown_env(self.root, name, path)
                try:
                    value = _parse_setting(self.root, path, env[name])
                except ConfigError as exc:
                    raise type(exc)(f"{name}: {exc}", path=path) from exc
                self._merge(_nest(path, value), name, "")

    def add_overrides(self, overrides: Mapping[str, Any]) -> None:
        for key, value in overrides.items():
            label = f"override {key!r}"
            _check_keys(self.root, _nest(key, value), label, "", python=True)
            self._merge(_nest(key, value), label, "")

    def _merge(self, data: Mapping[str, Any], label: str, prefix: str) -> None:
        target = self.merged
        for name in filter(None, prefix.split(".")):
            target = target[name]
        for key, value in data.items():
            path = prefix + key
            if path in _section_paths(self.root) and isinstance(value, Mapping):
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


def _check_types_alone(root: type, data: Mapping[str, Any], path: str) -> None:
    """Check the types of a file's values before the environment or a flag overrides them.

    A value of the wrong type is an error in the file even when a later source replaces
    it. Rules between settings (``tls.key_file`` needs ``tls.cert_file``) wait for the
    merged config, since a later source may complete what the file starts. Each top-level
    key is checked on its own, so that such a rule in one section hides no type error in
    another.
    """
    for key, value in data.items():
        alone = _Sources(root)
        alone._merge({key: value}, path, "")
        try:
            msgspec.convert(alone.merged, type=root)
        except msgspec.ValidationError as exc:
            error = alone.explain(exc)
            if isinstance(error, ConfigTypeError):
                raise error from exc


def _python_only(root: type, path: str) -> bool:
    return path in _settings(root) and _settings(root)[path][1]


def _nest(path: str, value: Any) -> dict[str, Any]:
    head, _, rest = path.partition(".")
    return {head: _nest(rest, value) if rest else value}


def _check_keys(
    root: type, data: Mapping[str, Any], label: str, prefix: str, *, python: bool
) -> None:
    """Reject keys that are not settings, at every level, naming the path and a suggestion.

    msgspec ignores unknown keys for dataclasses, so without this a typo would pass silently.
    """
    for key, value in data.items():
        path = prefix + key
        if path in _section_paths(root):
            if isinstance(value, Mapping):
                _check_keys(root, value, label, path + ".", python=python)
        elif path not in _settings(root):
            raise ConfigError(f"{label}: unknown key {key!r} - at `$.{path}`{_suggest(root, path)}")
        elif _python_only(root, path) and not python:
            raise ConfigError(f"{label}: {path} can only be set from Python - at `$.{path}`")


def _suggest(root: type, path: str) -> str:
    """A did-you-mean for a mistyped key: a sibling first, else the same name elsewhere."""
    prefix, _, key = path.rpartition(".")
    known = [*_settings(root), *_section_paths(root)]
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


def _unknown_env(root: type, name: str, path: str) -> ConfigError:
    if path in _section_paths(root):
        return ConfigError(f"{name}: a section; set {_env_name(path)}__<NAME>", path=path)
    names = [_env_name(p) for p in _settings(root) if not _python_only(root, p)]
    hint = _did_you_mean(name, [*names, *ENV_RESERVED])
    return ConfigError(f"{name}: unknown environment variable{hint}", path=path)


def _error_path(message: str) -> str | None:
    """The dotted path in msgspec's ``… - at `$.limits.data_size``` suffix, if any."""
    _, marker, where = message.rpartition(" - at `$")
    if not marker:
        return None
    return where.rstrip("`").lstrip(".").split("[")[0] or None
