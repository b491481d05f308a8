"""Opt-in OAuth 2.0 AUTH mechanisms: XOAUTH2 and OAUTHBEARER (RFC 7628).

A plain :class:`smtpkit.smtp.SMTP` does not offer them. Mix
:class:`OAuth2Mechanisms` into a handler class or into an SMTP subclass and
both mechanisms are advertised (after TLS, unless ``auth_require_tls`` is
off) and served::

    class Handler(OAuth2Mechanisms):
        async def handle_DATA(self, server, session, envelope): ...

    SMTP(Handler(), tls_context=context, authenticator=OAuthAuthenticator(check))

Each exchange reads the client's response (the initial response of
``AUTH XOAUTH2 <b64>``, or the answer to an empty ``334`` challenge), decodes
it with :mod:`smtpkit.auth.sasl` and hands the :class:`~smtpkit.auth.OAuthToken`
to the server's authenticator with the mechanism name ``"XOAUTH2"`` or
``"OAUTHBEARER"``. A refused token gets the JSON error challenge of RFC 7628
§3.2.2; once the client answers it (``AQ==`` for OAUTHBEARER, an empty line
for XOAUTH2) the exchange ends with ``535 5.7.8``, or with the
authenticator's own ``message``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._command import MISSING
from ._types import AuthResult
from .sasl import (
    OAuthToken,
    SASLError,
    oauthbearer_error_challenge,
    parse_oauthbearer,
    parse_xoauth2,
    xoauth2_error_challenge,
)

if TYPE_CHECKING:
    from ..smtp import SMTP

__all__ = ["OAuth2Mechanisms"]


@dataclasses.dataclass(frozen=True)
class _Spec:
    """What differs between the two OAuth mechanisms."""

    name: str
    parse: Callable[[bytes], OAuthToken]
    error_challenge: Callable[[OAuth2Mechanisms], bytes]


def _xoauth2_challenge(owner: OAuth2Mechanisms) -> bytes:
    return xoauth2_error_challenge(scope=owner.oauth_scope)


def _oauthbearer_challenge(owner: OAuth2Mechanisms) -> bytes:
    return oauthbearer_error_challenge(
        scope=owner.oauth_scope, openid_configuration=owner.oauth_openid_configuration
    )


_XOAUTH2 = _Spec("XOAUTH2", parse_xoauth2, _xoauth2_challenge)
_OAUTHBEARER = _Spec("OAUTHBEARER", parse_oauthbearer, _oauthbearer_challenge)


class OAuth2Mechanisms:
    """Adds the ``XOAUTH2`` and ``OAUTHBEARER`` AUTH mechanisms.

    Works as a base of a handler class or of an :class:`~smtpkit.smtp.SMTP`
    subclass. The authenticator receives an :class:`~smtpkit.auth.OAuthToken`;
    :class:`~smtpkit.auth.OAuthAuthenticator` adapts a token check to that.

    Attributes:
        oauth_scope: the scope named in the error challenge (for Gmail-style
            clients, e.g. ``"https://mail.google.com/"``), or None.
        oauth_openid_configuration: the OpenID configuration URL named in the
            OAUTHBEARER error challenge, or None.
    """

    oauth_scope: str | None = None
    oauth_openid_configuration: str | None = None

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        """Run an XOAUTH2 exchange.

        Args:
            server: the SMTP connection.
            args: the words of the AUTH command (``["XOAUTH2", <b64>?]``).

        Returns:
            The authenticator's result on success; otherwise a failure whose
            reply has been sent or is ``535 5.7.8`` (or the authenticator's
            ``message``).
        """
        return await _exchange(self, server, args, _XOAUTH2)

    async def auth_OAUTHBEARER(self, server: SMTP, args: list[str]) -> AuthResult:
        """Run an OAUTHBEARER exchange (RFC 7628).

        Args:
            server: the SMTP connection.
            args: the words of the AUTH command (``["OAUTHBEARER", <b64>?]``).

        Returns:
            The authenticator's result on success; otherwise a failure whose
            reply has been sent or is ``535 5.7.8`` (or the authenticator's
            ``message``).
        """
        return await _exchange(self, server, args, _OAUTHBEARER)


async def _exchange(
    owner: OAuth2Mechanisms, server: SMTP, args: list[str], spec: _Spec
) -> AuthResult:
    data = await _client_response(server, args)
    if data is None:
        return AuthResult(success=False)  # The error reply has been sent.
    try:
        token = spec.parse(data)
    except SASLError as error:
        await server.push(error.reply)
        return AuthResult(success=False)
    result = await server._authenticate(spec.name, token)
    if result.success:
        return result
    # RFC 7628 §3.2.2: tell the client why, wait for its dummy response,
    # then fail. Whatever it answers, the exchange is over.
    answer = await server.challenge_auth(spec.error_challenge(owner))
    if answer is MISSING:
        return AuthResult(success=False)  # It aborted: 501 has been sent.
    return AuthResult(success=False, handled=False, message=result.message)


async def _client_response(server: SMTP, args: list[str]) -> bytes | None:
    """The initial response, or the answer to an empty ``334`` challenge."""
    if len(args) > 1:
        return await server._decode_initial(args)
    answer = await server.challenge_auth(b"", encode_to_b64=False)
    return None if answer is MISSING else answer
