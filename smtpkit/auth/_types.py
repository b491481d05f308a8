"""Value types shared by the AUTH machinery and authenticators."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple


@dataclasses.dataclass(kw_only=True)
class AuthResult:
    """What an authenticator (or an ``auth_<NAME>`` method) decided.

    Attributes:
        success: whether the client is now authenticated.
        handled: only read when ``success`` is false. ``True`` means the
            mechanism already pushed its own reply; smtpkit still makes sure
            the client gets one (``535``) if nothing was pushed.
        message: the reply to send instead of the default one.
        auth_data: free-form data stored in ``session.auth_data`` on success
            (a :class:`LoginPassword` for PLAIN and LOGIN).
    """

    success: bool
    handled: bool = True
    message: str | None = None
    auth_data: Any = dataclasses.field(default=None, repr=False)


class LoginPassword(NamedTuple):
    """Credentials read by the PLAIN and LOGIN mechanisms.

    The password never appears in ``str()`` or ``repr()``.
    """

    login: bytes
    password: bytes

    def __str__(self) -> str:
        return f"LoginPassword(login={self.login!r}, password=...)"

    def __repr__(self) -> str:
        return self.__str__()
