"""Typed server configuration: the settings, their validation and the loader.

A :class:`ServerConfig` is a tree of frozen, keyword-only dataclasses, one per concern
(``listen``, ``limits``, ``tls``, ``auth``, ``proxy_protocol``, ``workers``). Build one in
Python, or let :meth:`ServerConfig.load` read it from a TOML file, ``SMTPKIT_…`` environment
variables and explicit overrides (in rising order of precedence).

Every value is checked when a config is built, whatever the source: a wrong type or an
out-of-range value raises :class:`ConfigError` naming the setting's dotted path, the value and
what was expected. Loading adds the source (file name, environment variable or override) in
front of the message.

Import everything from here; the modules behind it, each importing only those above it:

* ``_base``: :class:`ConfigError`, :class:`ConfigTypeError` and ``_Section``, the shared base
  of the sections (type and range checks, did-you-mean, secrets hidden in ``repr``,
  ``replace()``);
* ``_bridge``: which ``SMTP(...)`` keyword argument is which setting;
* ``_sections``: the section dataclasses, :class:`ListenConfig` to :class:`RateLimitsConfig`,
  and the TLS context built from the certificate files;
* ``_loading``: the flat table of settings, text parsing, the ``SMTPKIT_…`` names and the
  file/environment/override sources;
* ``_server``: :class:`ServerConfig`, :func:`config_fields` and :func:`parse_setting`.
"""

from __future__ import annotations

from ._base import ConfigError, ConfigTypeError
from ._bridge import _SMTP_KWARGS as _SMTP_KWARGS
from ._loading import ENV_CONFIG_FILE, ENV_PREFIX, ENV_RESERVED
from ._sections import (
    AuthConfig,
    LimitsConfig,
    ListenConfig,
    ProxyProtocolConfig,
    RateLimitsConfig,
    TLSConfig,
    WorkersConfig,
)
from ._server import LOG_LEVELS, ServerConfig, config_fields, parse_setting

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

# The errors are documented, raised and shown in tracebacks as smtpkit.config's.
ConfigError.__module__ = __name__
ConfigTypeError.__module__ = __name__
