"""What ``smtpkit run`` says at start-up: where it listens, what is on, what is unsafe.

The extensions are read from a protocol instance built by the same factory that
serves (it is never connected), so they are what clients will see in EHLO.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from ..config import ServerConfig
from ..smtp import SMTP

__all__ = ["extensions", "format_address", "is_loopback", "safety_warnings"]


def format_address(address: Any) -> str:
    """``127.0.0.1:8025``, ``[::1]:8025`` or a Unix socket path."""
    if isinstance(address, tuple) and len(address) >= 2:
        host = str(address[0])
        return f"[{host}]:{address[1]}" if ":" in host else f"{host}:{address[1]}"
    return str(address)


def extensions(protocol: SMTP, config: ServerConfig) -> str:
    """The EHLO keywords a client sees, and AUTH when it comes after STARTTLS.

    Args:
        protocol: an unconnected instance from the serving factory.
        config: the config it serves with.

    Returns:
        A comma-separated list, such as ``SIZE 33554432, 8BITMIME, PIPELINING, STARTTLS``.
    """
    protocol._tls_active = config.tls.implicit
    keywords = [line[4:] for line in protocol._ehlo_lines()[1:]]
    mechanisms = sorted(protocol._auth_methods)
    offered_later = protocol.tls_context is not None and not config.tls.implicit
    if mechanisms and offered_later and not any(word.startswith("AUTH") for word in keywords):
        keywords.append(f"AUTH {' '.join(mechanisms)} (after STARTTLS)")
    if offered_later and protocol.requiretls:
        keywords.append("REQUIRETLS (after STARTTLS)")
    keywords += _trusted_only(protocol)
    return ", ".join(keywords)


def _trusted_only(protocol: SMTP) -> list[str]:
    """XCLIENT and XFORWARD, offered only to the clients in their trusted networks."""
    found = []
    for verb, networks in (
        ("XCLIENT", protocol._settings.xclient_networks),
        ("XFORWARD", protocol._settings.xforward_networks),
    ):
        if networks:
            found.append(f"{verb} (to {', '.join(map(str, networks))})")
    return found


def features(protocol: SMTP, config: ServerConfig) -> str:
    """The other settings a client notices: TLS mode, PROXY, required STARTTLS/AUTH.

    Returns:
        A comma-separated list, or ``""`` when none is on.
    """
    found = []
    if config.tls.implicit:
        found.append("implicit TLS")
    if protocol.require_starttls:
        found.append("STARTTLS required")
    if protocol._auth_required:
        found.append("AUTH required")
    if config.proxy_protocol.timeout is not None:
        trusted = ", ".join(config.proxy_protocol.trusted_networks) or "any peer"
        found.append(
            f"PROXY protocol (timeout {config.proxy_protocol.timeout:g} s, from {trusted})"
        )
    return ", ".join(found)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def safety_warnings(protocol: SMTP, config: ServerConfig, *, default_app: bool) -> list[str]:
    """Warnings about unsafe or ineffective settings.

    Args:
        protocol: an unconnected instance from the serving factory.
        config: the config it serves with.
        default_app: whether the embedded default is served.

    Returns:
        One sentence per problem found.
    """
    found = _auth_warnings(protocol, config) + _tls_warnings(protocol, config)
    if config.listen.unix_socket is None and not is_loopback(config.listen.host):
        found += _exposure_warnings(config, default_app)
    if config.proxy_protocol.timeout is not None and not hasattr(
        protocol.event_handler, "handle_PROXY"
    ):
        found.append(
            "the PROXY protocol is on but the handler has no handle_PROXY hook: every "
            "connection will be refused (add @app.hook('PROXY') returning True)"
        )
    return found


def _auth_warnings(protocol: SMTP, config: ServerConfig) -> list[str]:
    found = []
    has_tls = config.tls.implicit or protocol.tls_context is not None
    if protocol._auth_methods and not config.auth.require_tls:
        found.append(
            "auth.require_tls is off: AUTH is accepted without TLS, so passwords cross the "
            "network in clear text"
        )
    elif protocol._auth_required and not has_tls:
        found.append(
            "AUTH is required but needs TLS, and no certificate is set (--tls-cert): no "
            "client can authenticate, so no client can send mail"
        )
    return found


def _tls_warnings(protocol: SMTP, config: ServerConfig) -> list[str]:
    if config.tls.require_starttls and protocol.tls_context is None and not config.tls.implicit:
        return [
            "tls.require_starttls is set but no certificate is (--tls-cert): STARTTLS cannot "
            "be offered, so clients send mail without TLS"
        ]
    return []


def _exposure_warnings(config: ServerConfig, default_app: bool) -> list[str]:
    host = config.listen.host or "every interface"
    found = []
    limits = config.limits
    if limits.max_connections is None or limits.max_connections_per_ip is None:
        found.append(
            f"listening on {host}, beyond loopback, without a connection limit: set "
            "limits.max_connections and limits.max_connections_per_ip"
        )
    if limits.data_size == 0:
        found.append(f"listening on {host}, beyond loopback, with no message size limit")
    if config.proxy_protocol.timeout is not None and not config.proxy_protocol.trusted_networks:
        found.append(
            "the PROXY protocol is on for any peer: a client that reaches the port can claim "
            "any address; set proxy_protocol.trusted_networks to the load balancers"
        )
    if default_app:
        found.append(
            f"the embedded default stores any message for anyone and listens on {host}: "
            "it is meant for development; keep it on loopback or behind a firewall"
        )
    return found
