"""The bridge to the ``SMTP(...)`` keyword arguments: which argument is which setting.

``ServerConfig.to_smtp_kwargs`` and ``ServerConfig.from_smtp_kwargs`` translate with this
table; docs/configuration.md prints it (a test keeps the two in step). The few arguments
whose spelling differs from the setting's type (``data_size_limit=None``, a single
``auth_exclude_mechanism`` string) are mapped by :func:`_from_smtp_value`. This module
imports nothing else of smtpkit.
"""

from __future__ import annotations

from typing import Any

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
"""``SMTP`` arguments that are objects, not configuration: accepted and ignored."""


def _from_smtp_value(name: str, value: Any) -> Any:
    """Map the few ``SMTP`` argument spellings that differ from the config's types."""
    if name == "data_size_limit" and value is None:
        return 0
    if name == "auth_exclude_mechanism":
        if value is None:
            return ()
        return (value,) if isinstance(value, str) else tuple(value)
    return value
