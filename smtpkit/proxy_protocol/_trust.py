"""Which directly connected peers may send a PROXY header."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ._types import IPAddress, IPNetwork


def parse_networks(networks: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    """Turn CIDR strings into network objects, once, for `is_trusted`.

    Args:
        networks: CIDR strings (``"10.0.0.0/8"``, ``"::1/128"``, a bare
            address for one host) or network objects.

    Returns:
        The networks.

    Raises:
        ValueError: A string is not a network (host bits set count as an error,
            since ``10.0.0.1/8`` is most likely a typo).
    """
    parsed: list[IPNetwork] = []
    for network in networks:
        if not isinstance(network, str):
            parsed.append(network)
            continue
        try:
            parsed.append(ipaddress.ip_network(network))
        except ValueError as exc:
            raise ValueError(
                f"trusted network {network!r} is invalid ({exc});"
                " expected CIDR notation such as '10.0.0.0/8'"
            ) from None
    return tuple(parsed)


def is_trusted(peer_ip: str, networks: Iterable[str | IPNetwork]) -> bool:
    """Tell whether a directly connected peer may send a PROXY header.

    Args:
        peer_ip: The peer's address as the socket reports it. An IPv4-mapped
            IPv6 address (``::ffff:10.0.0.1``) also matches IPv4 networks.
        networks: Trusted networks in CIDR notation (or from `parse_networks`).

    Returns:
        ``True`` when the address is in one of the networks; ``False`` for an
        address that does not parse (a UNIX socket path, an empty string).

    Raises:
        ValueError: A network string is invalid.
    """
    nets = parse_networks(networks)
    try:
        address = ipaddress.ip_address(peer_ip)
    except ValueError:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        candidates.append(address.ipv4_mapped)
    return any(
        candidate in net
        for net in nets
        for candidate in candidates
        if candidate.version == net.version
    )
