"""The server flags of ``smtpkit run``, and the config settings they set.

Each flag is one row of :data:`SERVER_FLAGS`: its option, the dotted config path it
sets and its help. The same table builds the argparse options, turns parsed flags
into ``ServerConfig.load(overrides=...)`` and back into command-line arguments (for
the worker and reload child processes), and feeds the docs test that keeps
``docs/cli.md`` in step with ``--help``.

Flags are kept as text by argparse and converted with
:func:`smtpkit.config.parse_setting`, so a bad value gets the same message as in an
environment variable, with the flag's name in front.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..config import ENV_PREFIX, LOG_LEVELS, ConfigError, parse_setting

LOG_FORMATS = ("text", "json")

__all__ = [
    "DEFAULT_PROXY_TIMEOUT",
    "SERVER_FLAGS",
    "Flag",
    "UsageError",
    "add_server_flags",
    "env_name",
    "flag_arguments",
    "overrides_from",
]

#: The PROXY header timeout ``--proxy-protocol`` sets when none is configured.
DEFAULT_PROXY_TIMEOUT = 10.0


class UsageError(Exception):
    """A flag, target or setting given on the command line is wrong (exit status 2)."""


@dataclass(frozen=True)
class Flag:
    """One server flag.

    Attributes:
        option: the long option, such as ``"--port"``.
        path: the dotted ServerConfig path it sets.
        help: one line for ``--help``.
        metavar: the value's name in ``--help``; None for an on/off switch.
        choices: the accepted values, when they are few.
    """

    option: str
    path: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def dest(self) -> str:
        """The attribute name argparse stores the flag under."""
        return self.option[2:].replace("-", "_")

    @property
    def kind(self) -> Literal["value", "switch"]:
        """``"switch"`` for ``--x/--no-x`` flags, ``"value"`` for flags taking a value."""
        return "switch" if self.metavar is None else "value"


SERVER_FLAGS: tuple[Flag, ...] = (
    Flag("--host", "listen.host", "address to listen on (default: 127.0.0.1)", "ADDRESS"),
    Flag(
        "--port", "listen.port", "TCP port to listen on; 0 picks a free one (default: 8025)", "PORT"
    ),
    Flag(
        "--workers",
        "workers.count",
        "number of server processes sharing the port with SO_REUSEPORT (default: 1)",
        "N",
    ),
    Flag(
        "--loop",
        "loop",
        "event loop (default: asyncio; uvloop must be installed)",
        "LOOP",
        ("asyncio", "uvloop"),
    ),
    Flag("--tls-cert", "tls.cert_file", "PEM certificate chain: offers STARTTLS", "FILE"),
    Flag("--tls-key", "tls.key_file", "PEM private key, when not in the certificate file", "FILE"),
    Flag("--implicit-tls", "tls.implicit", "speak TLS from the first byte (port 465 style)"),
    Flag(
        "--require-starttls",
        "tls.require_starttls",
        "refuse mail commands until the client has used STARTTLS",
    ),
    Flag(
        "--proxy-protocol",
        "proxy_protocol.timeout",
        f"expect a PROXY v1/v2 header on each connection (timeout: the configured one, "
        f"else {DEFAULT_PROXY_TIMEOUT:g} s)",
    ),
    Flag(
        "--proxy-protocol-timeout",
        "proxy_protocol.timeout",
        "expect a PROXY header, waiting this long for it",
        "SECONDS",
    ),
    Flag("--log-level", "log_level", "logging level (default: info)", "LEVEL", LOG_LEVELS),
    Flag("--log-format", "log_format", "log line format (default: text)", "FORMAT", LOG_FORMATS),
    Flag(
        "--maildir",
        "maildir",
        "Maildir of the embedded default app (default: ./smtpkit-mail)",
        "DIR",
    ),
    Flag(
        "--graceful-timeout",
        "workers.graceful_timeout",
        "seconds a command in progress gets to finish on shutdown (default: 30)",
        "SECONDS",
    ),
)


def env_name(path: str) -> str:
    """The environment variable of a setting: ``listen.port`` -> ``SMTPKIT_LISTEN__PORT``."""
    return ENV_PREFIX + path.upper().replace(".", "__")


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """Add every server flag to ``parser``; values stay text, switches True/False/None.

    Args:
        parser: the ``run`` parser.
    """
    group = parser.add_argument_group(
        "server settings", "Each also reads from its SMTPKIT_ variable and the config file."
    )
    for flag in SERVER_FLAGS:
        help_text = f"{flag.help} [{env_name(flag.path)}]"
        if flag.kind == "switch":
            group.add_argument(
                flag.option, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            group.add_argument(
                flag.option,
                metavar=flag.metavar,
                default=None,
                help=help_text + (f" (one of: {', '.join(flag.choices)})" if flag.choices else ""),
            )


def overrides_from(namespace: argparse.Namespace) -> dict[str, Any]:
    """The ``ServerConfig.load(overrides=...)`` mapping of the flags given.

    ``--proxy-protocol`` is not in it: it needs the loaded config (see
    :func:`smtpkit._cli.settings.load_config`); ``--no-proxy-protocol`` is (timeout None).

    Args:
        namespace: the parsed ``run`` arguments.

    Returns:
        Dotted config path -> typed value, for every flag given.

    Raises:
        UsageError: a value that does not convert, or contradicting flags; the message
            starts with the flag.
    """
    overrides: dict[str, Any] = {}
    for flag in SERVER_FLAGS:
        value = getattr(namespace, flag.dest, None)
        if value is None or flag.option == "--proxy-protocol":
            continue
        overrides[flag.path] = _converted(flag, value)
    if getattr(namespace, "proxy_protocol", None) is False:
        if "proxy_protocol.timeout" in overrides:
            raise UsageError(
                "--no-proxy-protocol and --proxy-protocol-timeout contradict each other; "
                "give one of them"
            )
        overrides["proxy_protocol.timeout"] = None
    return overrides


def _converted(flag: Flag, value: Any) -> Any:
    if flag.kind == "switch":
        return bool(value)
    text = str(value)
    if flag.choices is not None and text.lower() not in flag.choices:
        raise UsageError(
            f"{flag.option}: {text!r} is not a choice; expected one of {', '.join(flag.choices)}"
        )
    try:
        return parse_setting(flag.path, text.lower() if flag.choices else text)
    except ConfigError as exc:
        raise UsageError(f"{flag.option}: {exc}") from exc


def flag_arguments(namespace: argparse.Namespace, *, skip: Sequence[str] = ()) -> list[str]:
    """Turn the flags given back into command-line arguments.

    Args:
        namespace: the parsed ``run`` arguments.
        skip: options to leave out (such as ``"--workers"`` for a worker).

    Returns:
        Arguments that parse to the same flags.
    """
    arguments: list[str] = []
    for flag in SERVER_FLAGS:
        value = getattr(namespace, flag.dest, None)
        if value is None or flag.option in skip:
            continue
        if flag.kind == "switch":
            arguments.append(flag.option if value else "--no-" + flag.option[2:])
        else:
            arguments.append(f"{flag.option}={value}")
    return arguments


def flag_label(path: str, message: str) -> str:
    """Name the flag instead of the loader's ``override 'path'`` label in a message."""
    flags = sorted((f for f in SERVER_FLAGS if f.path == path), key=lambda f: f.kind != "value")
    if not flags:
        return message
    return message.replace(f"override {path!r}", flags[0].option)
