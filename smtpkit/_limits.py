"""Connection counting shared by all connections of one server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._replies import TOO_MANY_CONNECTIONS as _TOO_MANY

if TYPE_CHECKING:
    from .ratelimit import RateLimiter

__all__ = ["TOO_MANY_CONNECTIONS", "ConnectionLimiter"]

#: The bare line (written by the connection before any command).
TOO_MANY_CONNECTIONS = _TOO_MANY.format()


class ConnectionLimiter:
    """Counts open connections, in all and per client address.

    One instance is shared by every connection of a server (pass it to
    ``SMTP(..., connection_limiter=limiter)``). A connection past either
    maximum gets ``421 4.7.0`` and is closed; the ones already open are not
    disturbed.

    Args:
        max_connections: the most connections at once; None for no limit.
        max_per_ip: the most connections from one client address; None for
            no limit.
        rates: connections per client address per time window
            (``rate_limits.connections``); None for no limit.

    Attributes:
        refusal: the reply for the connection refused last (the rate limit's
            names the address, the limit and the window).
    """

    __slots__ = ("_per_ip", "max_connections", "max_per_ip", "rates", "refusal", "total")

    def __init__(
        self,
        max_connections: int | None = None,
        max_per_ip: int | None = None,
        *,
        rates: RateLimiter | None = None,
    ) -> None:
        for name, value in (("max_connections", max_connections), ("max_per_ip", max_per_ip)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive int or None, not {value!r}")
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.rates = rates
        self.refusal = TOO_MANY_CONNECTIONS
        #: Connections open now.
        self.total = 0
        self._per_ip: dict[str, int] = {}

    def acquire(self, address: str | None) -> bool:
        """Count a new connection from ``address``; False when over a limit."""
        self.refusal = TOO_MANY_CONNECTIONS
        max_connections = self.max_connections
        if max_connections is not None and self.total >= max_connections:
            return False
        counted = address is not None and self.max_per_ip is not None
        if counted and self._full(address):
            return False
        if self.rates is not None and not self._within_rate(address):
            return False
        if counted:
            assert address is not None
            self._per_ip[address] = self._per_ip.get(address, 0) + 1
        self.total += 1
        return True

    def release(self, address: str | None) -> None:
        """Forget a connection counted by :meth:`acquire`."""
        self.total -= 1
        if address is not None and self.max_per_ip is not None:
            self._forget(address)

    def reassign(self, old: str | None, new: str | None) -> bool:
        """Count a connection counted for ``old`` as coming from ``new`` instead.

        Behind a load balancer speaking the PROXY protocol, every connection
        comes from the balancer; the client's own address is known only once
        the header is read, after the connection was counted (with ``None``).

        Returns:
            False, changing nothing, when ``new`` already has ``max_per_ip``
            connections.
        """
        self.refusal = TOO_MANY_CONNECTIONS
        if old == new:
            return True
        if self._full(new):
            return False
        if not self._within_rate(new):
            return False
        if new is not None and self.max_per_ip is not None:
            self._per_ip[new] = self._per_ip.get(new, 0) + 1
        self._forget(old)
        return True

    def _full(self, address: str | None) -> bool:
        if address is None or self.max_per_ip is None:
            return False
        return self._per_ip.get(address, 0) >= self.max_per_ip

    def _within_rate(self, address: str | None) -> bool:
        refusal = self.rates.check_connection(address) if self.rates is not None else None
        if refusal is not None:
            self.refusal = refusal
            return False
        return True

    def _forget(self, address: str | None) -> None:
        if address is not None and self.max_per_ip is not None:
            left = self._per_ip.get(address, 0) - 1
            if left > 0:
                self._per_ip[address] = left
            else:
                self._per_ip.pop(address, None)

    def count(self, address: str) -> int:
        """Connections open now from ``address``."""
        return self._per_ip.get(address, 0)
