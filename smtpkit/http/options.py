"""The ``--http*`` flags of ``smtpkit run`` and the options they make.

This module imports nothing from the ``http`` extra, so the command line can add the
flags and say clearly that the extra is missing.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._cli.options import UsageError

__all__ = [
    "AUTH_ENV",
    "DEFAULT_ADDRESS",
    "RELEASE_ENV",
    "HttpOptions",
    "add_http_flags",
    "http_arguments",
    "http_options_from",
    "parse_address",
    "require_extra",
]

#: Where ``--http`` listens when given without a value.
DEFAULT_ADDRESS = "127.0.0.1:8026"
#: The environment variable read for ``--http-auth`` (keeps the password off the command line).
AUTH_ENV = "SMTPKIT_HTTP_AUTH"
#: The environment variable read for ``--http-release-to``: ``HOST:PORT`` values, comma-separated.
RELEASE_ENV = "SMTPKIT_HTTP_RELEASE_TO"
_EXTRA_MODULES = ("starlette", "uvicorn")


@dataclass(frozen=True)
class HttpOptions:
    """How the HTTP listener serves.

    Attributes:
        host: the address to listen on.
        port: the TCP port; 0 picks a free one.
        auth: ``(user, password)`` for HTTP basic auth, or None for none.
        release_to: the ``(host, port)`` SMTP servers captured mail may be released to.
    """

    host: str = "127.0.0.1"
    port: int = 8026
    auth: tuple[str, str] | None = field(default=None, repr=False)
    release_to: tuple[tuple[str, int], ...] = ()


def parse_address(text: str, what: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[::1]:8026`` for IPv6).

    Args:
        text: the address.
        what: the flag it came from, for the message.

    Raises:
        UsageError: not ``HOST:PORT`` with a port from 0 to 65535.
    """
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(
            f"{what}: {text!r} is not an address; expected HOST:PORT, such as {DEFAULT_ADDRESS}"
        )
    return host, int(port)


def _parse_auth(text: str, what: str) -> tuple[str, str]:
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise UsageError(f"{what}: expected USER:PASSWORD, both not empty")
    return user, password


def require_extra() -> None:
    """Make sure the ``http`` extra can be imported.

    Raises:
        UsageError: starlette or uvicorn cannot be imported; the message says what to install.
    """
    for name in _EXTRA_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise UsageError(
                f"--http needs the http extra: python3 -m pip install 'smtpkit-server[http]' "
                f"(cannot import {name}: {exc})"
            ) from None


def add_http_flags(parser: argparse.ArgumentParser) -> None:
    """Add the ``--http*`` flags to the ``run`` parser."""
    group = parser.add_argument_group(
        "capture UI", "A web page and JSON API over the --maildir folder (needs smtpkit[http])."
    )
    group.add_argument(
        "--http",
        nargs="?",
        const=DEFAULT_ADDRESS,
        default=None,
        metavar="HOST:PORT",
        help=f"serve the capture UI and its API on this address (default: {DEFAULT_ADDRESS}); "
        "write --http=HOST:PORT when TARGET follows",
    )
    group.add_argument(
        "--http-auth",
        metavar="USER:PASSWORD",
        default=None,
        help=f"require HTTP basic auth with these credentials [{AUTH_ENV}]",
    )
    group.add_argument(
        "--http-insecure",
        action="store_true",
        default=False,
        help="allow --http beyond loopback without --http-auth",
    )
    group.add_argument(
        "--http-release-to",
        metavar="HOST:PORT",
        action="append",
        default=None,
        help=f"an SMTP server captured mail may be released to (repeat for several) "
        f"[{RELEASE_ENV}, comma-separated]",
    )


def http_options_from(
    namespace: argparse.Namespace, env: Mapping[str, str] | None = None
) -> HttpOptions | None:
    """The HTTP options of the parsed flags, or None without ``--http``.

    Raises:
        UsageError: a bad address or credentials, ``--http*`` flags without ``--http``, the
            extra missing, or an address beyond loopback without credentials nor
            ``--http-insecure``.
    """
    from .._cli.banner import is_loopback  # imports the SMTP class: only when serving

    env = os.environ if env is None else env
    if namespace.http is None:
        if namespace.http_auth or namespace.http_insecure or namespace.http_release_to:
            raise UsageError("--http-auth, --http-insecure and --http-release-to need --http")
        return None
    host, port = parse_address(namespace.http, "--http")
    auth_text = namespace.http_auth or env.get(AUTH_ENV) or None
    auth = _parse_auth(auth_text, "--http-auth") if auth_text else None
    if auth is None and not namespace.http_insecure and not is_loopback(host):
        raise UsageError(
            f"--http {namespace.http}: listening beyond loopback needs credentials "
            f"(--http-auth USER:PASSWORD or {AUTH_ENV}) or --http-insecure"
        )
    targets = _release_targets(namespace.http_release_to, env.get(RELEASE_ENV, ""))
    require_extra()
    return HttpOptions(host=host, port=port, auth=auth, release_to=targets)


def _release_targets(flags: list[str] | None, env_value: str) -> tuple[tuple[str, int], ...]:
    """The flags' targets, else the environment variable's."""
    if flags:
        return tuple(parse_address(text, "--http-release-to") for text in flags)
    texts = [text.strip() for text in env_value.split(",") if text.strip()]
    return tuple(parse_address(text, RELEASE_ENV) for text in texts)


def http_arguments(namespace: argparse.Namespace) -> list[str]:
    """The ``--http*`` flags given, as arguments for a child process."""
    if namespace.http is None:
        return []
    arguments = [f"--http={namespace.http}"]
    if namespace.http_auth:
        arguments.append(f"--http-auth={namespace.http_auth}")
    if namespace.http_insecure:
        arguments.append("--http-insecure")
    arguments += [f"--http-release-to={text}" for text in namespace.http_release_to or ()]
    return arguments
