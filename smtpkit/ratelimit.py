"""Rate limits per client address: connections, messages and recipients per time window.

What operators know from Postfix's anvil (``smtpd_client_connection_rate_limit``,
``smtpd_client_message_rate_limit``, ``smtpd_client_recipient_rate_limit``): each client
address may open so many connections, start so many messages (MAIL) and name so many
recipients (RCPT) per window of ``rate_limits.window`` seconds. Past a limit:

* a connection gets ``421 4.7.0`` and is closed (at accept, by the connection limiter);
* MAIL or RCPT gets ``450 4.7.1`` (by :class:`RateLimitedHandler`, which wraps the handler);

and the reply names the client, the limit and the window. A refused attempt is not
counted, so a client that waits out the window gets in again.

The counts live in a :class:`RateStore`. :class:`MemoryRateStore`, the default, keeps them
in the memory of one process: with ``--workers N`` each worker counts on its own, and so does
each host behind a load balancer. A shared store (Redis, a database) is any object with a
``hit(key, window, limit)`` method, sync or async, given as ``rate_limits.store``.
"""

from __future__ import annotations

import collections
import functools
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .config import RateLimitsConfig

__all__ = [
    "MemoryRateStore",
    "RateLimitedHandler",
    "RateLimiter",
    "RateStore",
    "client_address",
    "with_rate_limits",
]

Kind = Literal["connections", "messages", "recipients"]
#: The reply code (and enhanced code) of each limit.
_CODES: dict[str, str] = {
    "connections": "421 4.7.0",
    "messages": "450 4.7.1",
    "recipients": "450 4.7.1",
}
#: A memory store forgets the addresses it has not seen for a window every this many hits.
_SWEEP_EVERY = 1024


@runtime_checkable
class RateStore(Protocol):
    """Where the hits of the rate limits are counted.

    One method: ``hit(key, window, limit)`` counts one event for ``key`` (such as
    ``"recipients:192.0.2.7"``) and answers True when at most ``limit`` events happened
    in the last ``window`` seconds, this one included; False (and the event is not
    counted) when it would be one too many. It may be a plain method or a coroutine.
    With a coroutine, connection limits cannot be checked at accept, which needs the
    answer at once: configuring ``rate_limits.connections`` with one raises TypeError.
    """

    def hit(self, key: str, window: float, limit: int) -> bool | Awaitable[bool]:
        """Count one event for ``key``; False when it is over ``limit`` per ``window`` s."""
        ...


class MemoryRateStore:
    """A sliding-window :class:`RateStore` in this process's memory.

    Each key keeps the times of its last ``limit`` accepted events, so memory is bounded
    by the limit per address; addresses silent for a whole window are forgotten.

    Args:
        clock: returns the time in seconds (default ``time.monotonic``).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._events: dict[str, collections.deque[float]] = {}
        self._longest = 0.0
        self._hits = 0

    def hit(self, key: str, window: float, limit: int) -> bool:
        """Count one event for ``key``; False (not counted) when over ``limit`` per ``window``."""
        now = self._clock()
        self._hits += 1
        self._longest = max(self._longest, window)
        if self._hits % _SWEEP_EVERY == 0:
            self._sweep(now)
        events = self._events.setdefault(key, collections.deque())
        while events and events[0] <= now - window:
            events.popleft()
        if len(events) >= limit:
            return False
        events.append(now)
        return True

    def __len__(self) -> int:
        """How many keys are remembered."""
        return len(self._events)

    def _sweep(self, now: float) -> None:
        stale = [k for k, e in self._events.items() if not e or e[-1] <= now - self._longest]
        for key in stale:
            del self._events[key]


def client_address(session: Any) -> str | None:
    """The client's address: the one a PROXY header named, else the peer's; None if unknown.

    Args:
        session: an ``smtpkit.smtp.Session``.
    """
    proxy = getattr(session, "proxy_data", None)
    source = getattr(proxy, "src_addr", None) if proxy is not None else None
    if source is not None:
        return str(source)
    peer = getattr(session, "peer", None)
    if isinstance(peer, tuple) and peer and isinstance(peer[0], str) and peer[0]:
        return peer[0]
    return None


@dataclass(frozen=True)
class RateLimiter:
    """The rate limits of one server and the store counting them.

    Args:
        window: seconds each limit counts over.
        connections: connections per address per window (None: no limit).
        messages: MAIL commands per address per window (None: no limit).
        recipients: RCPT commands per address per window (None: no limit).
        store: where hits are counted.

    Raises:
        TypeError: a connection limit with a store whose ``hit`` is a coroutine.
    """

    window: float
    connections: int | None
    messages: int | None
    recipients: int | None
    store: RateStore

    def __post_init__(self) -> None:
        if self.connections is not None and inspect.iscoroutinefunction(self.store.hit):
            raise TypeError(
                f"rate_limits.connections = {self.connections}: the store "
                f"{type(self.store).__name__} has an async hit(), but connections are counted "
                "at accept, which needs the answer at once; give a store with a plain hit() "
                "or leave rate_limits.connections unset"
            )

    @classmethod
    def from_config(cls, config: RateLimitsConfig) -> RateLimiter | None:
        """The limiter for ``config.rate_limits``, or None when it sets no limit."""
        if not (config.connections or config.messages or config.recipients):
            return None
        return cls(
            window=config.window,
            connections=config.connections or None,
            messages=config.messages or None,
            recipients=config.recipients or None,
            store=config.store if config.store is not None else MemoryRateStore(),
        )

    def refusal(self, kind: Kind, address: str) -> str:
        """The reply for ``address`` past the ``kind`` limit."""
        limit = getattr(self, kind)
        return (
            f"{_CODES[kind]} Too many {kind} from {address}: at most {limit} per {self.window:g} s"
        )

    def check_connection(self, address: str | None) -> str | None:
        """Count a connection from ``address``; the 421 reply when over the limit, else None."""
        if self.connections is None or address is None:
            return None
        allowed = self.store.hit(f"connections:{address}", self.window, self.connections)
        return None if allowed else self.refusal("connections", address)

    async def check(self, kind: Literal["messages", "recipients"], session: Any) -> str | None:
        """Count a MAIL or RCPT of ``session``'s client; the 450 reply when over, else None."""
        limit = getattr(self, kind)
        address = client_address(session)
        if limit is None or address is None:
            return None
        allowed = self.store.hit(f"{kind}:{address}", self.window, limit)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return None if allowed else self.refusal(kind, address)


class RateLimitedHandler:
    """A handler that checks the message and recipient rate limits before the one it wraps.

    MAIL past ``messages`` and RCPT past ``recipients`` get ``450 4.7.1``; everything
    else, and every other attribute, is the wrapped handler's. The App and ``smtpkit
    run`` wrap their handler when ``rate_limits`` sets a limit; with the SMTP class,
    wrap it yourself: ``SMTP(with_rate_limits(handler, config), config=config)``.

    Args:
        handler: the handler to wrap.
        limiter: the limits and their store.
    """

    def __init__(self, handler: Any, limiter: RateLimiter) -> None:
        self.__dict__["wrapped"] = handler
        self.__dict__["limiter"] = limiter

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["wrapped"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__dict__["wrapped"], name, value)

    def __repr__(self) -> str:
        return f"RateLimitedHandler({self.wrapped!r})"

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> Any:
        """Refuse past the message limit, else what the wrapped ``handle_MAIL`` says."""
        refusal = await self.limiter.check("messages", session)
        if refusal is not None:
            return refusal
        return await self._delegate("handle_MAIL", server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> Any:
        """Refuse past the recipient limit, else what the wrapped ``handle_RCPT`` says."""
        refusal = await self.limiter.check("recipients", session)
        if refusal is not None:
            return refusal
        return await self._delegate("handle_RCPT", server, session, envelope, address, options)

    async def _delegate(self, name: str, *args: Any) -> Any:
        hook = getattr(self.wrapped, name, None)
        if hook is None:
            from .smtp import MISSING  # the server's own default then applies

            return MISSING
        status = hook(*args)
        if inspect.isawaitable(status):
            status = await status
        return status


def with_rate_limits(handler: Any, config: Any) -> Any:
    """``handler`` wrapped in a :class:`RateLimitedHandler` when ``config`` limits rates.

    Args:
        handler: an SMTP handler object.
        config: a ServerConfig (its ``rate_limits`` section).

    Returns:
        The wrapper, or ``handler`` itself when no message or recipient limit is set.
    """
    limits = config.rate_limits
    if not (limits.messages or limits.recipients) or isinstance(handler, RateLimitedHandler):
        return handler
    limiter = RateLimiter.from_config(limits)
    assert limiter is not None
    wrapper_class: type[RateLimitedHandler] = _wrapper_class(type(handler))  # type: ignore[arg-type]
    return wrapper_class(handler, limiter)


@functools.lru_cache(maxsize=64)
def _wrapper_class(handler_class: type) -> type[RateLimitedHandler]:
    """A RateLimitedHandler subclass carrying the ``auth_*`` methods of ``handler_class``.

    AUTH mechanisms defined on a handler are found on its class, so the wrapper's class
    must have them too.
    """
    methods = {n: getattr(handler_class, n) for n in dir(handler_class) if n.startswith("auth_")}
    if not methods:
        return RateLimitedHandler
    return type(f"RateLimited{handler_class.__name__}", (RateLimitedHandler,), methods)
