"""The config ``smtpkit run`` serves with: flags > environment > file > the app's config.

:meth:`ServerConfig.load` layers a file, ``SMTPKIT_…`` variables and overrides over
the *defaults*. An App brings its own config, built in Python, which must stay the
base: ``App(ServerConfig(hostname="mx.example.com"))`` run with ``--port 2525`` keeps
its hostname. So the settings that the file, the environment and the flags actually
name are taken from the loaded config and applied to the app's config with
``replace()``; everything they do not name keeps the app's value.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec.toml

from ..config import (
    ENV_CONFIG_FILE,
    ENV_PREFIX,
    ENV_RESERVED,
    ConfigError,
    ServerConfig,
    config_fields,
)
from .options import DEFAULT_PROXY_TIMEOUT, UsageError, flag_label, overrides_from

__all__ = ["config_file", "load_config"]


def config_file(namespace: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The TOML file to read: ``--config``, else ``SMTPKIT_CONFIG``, else none."""
    path = getattr(namespace, "config", None) or env.get(ENV_CONFIG_FILE) or None
    return os.fspath(path) if path is not None else None


def load_config(
    namespace: argparse.Namespace,
    base: ServerConfig | None = None,
    env: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Build the config to serve with.

    Args:
        namespace: the parsed ``run`` arguments (server flags and ``--config``).
        base: the app's own config (None: the defaults).
        env: the environment (default ``os.environ``).

    Returns:
        The validated config.

    Raises:
        UsageError: a flag, variable, file or resulting value is invalid; the message
            names the source (``--port``, ``SMTPKIT_LISTEN__PORT``, the file) and the setting.
    """
    environ = os.environ if env is None else env
    overrides = overrides_from(namespace)
    path = config_file(namespace, environ)
    try:
        loaded = ServerConfig.load(path, env=environ, overrides=overrides)
        config = _layered(base, loaded, _named_paths(path, environ, overrides))
    except ConfigError as exc:
        raise UsageError(_labelled(exc)) from exc
    if getattr(namespace, "proxy_protocol", None) and config.proxy_protocol.timeout is None:
        config = config.replace(**{"proxy_protocol.timeout": DEFAULT_PROXY_TIMEOUT})
    return config


def _labelled(exc: ConfigError) -> str:
    return flag_label(exc.path, str(exc)) if exc.path else str(exc)


def _layered(base: ServerConfig | None, loaded: ServerConfig, named: set[str]) -> ServerConfig:
    if base is None or base == ServerConfig():
        return loaded
    return base.replace(**{path: _get(loaded, path) for path in sorted(named)})


def _get(config: ServerConfig, path: str) -> Any:
    value: Any = config
    for name in path.split("."):
        value = getattr(value, name)
    return value


def _named_paths(
    path: str | None, env: Mapping[str, str], overrides: Mapping[str, Any]
) -> set[str]:
    """The dotted paths of the settings that the file, the environment or a flag name."""
    settings = {row[0] for row in config_fields()}
    named = set(overrides)
    for name in env:
        if name.startswith(ENV_PREFIX) and name not in ENV_RESERVED:
            named.add(name[len(ENV_PREFIX) :].lower().replace("__", "."))
    if path is not None:
        # The loader has read and checked this file already; it decodes.
        with open(path, "rb") as file:
            data = msgspec.toml.decode(file.read())
        named.update(_leaf_paths(data, settings, ""))
    return named & settings


def _leaf_paths(data: Mapping[str, Any], settings: set[str], prefix: str) -> Iterator[str]:
    for key, value in data.items():
        path = prefix + key
        if path in settings:
            yield path
        elif isinstance(value, Mapping):
            yield from _leaf_paths(value, settings, path + ".")
