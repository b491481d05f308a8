"""SMTP AUTH support: result types, SASL decoding and ready-made authenticators.

An authenticator is any callable
``(server, session, envelope, mechanism, auth_data) -> AuthResult``; pass one
as ``SMTP(..., authenticator=...)``.
"""

from __future__ import annotations

from smtpkit.auth._types import AuthResult, LoginPassword
from smtpkit.auth.authenticators import (
    ChainAuthenticator,
    MemoryAuthenticator,
    OAuthAuthenticator,
    PasswordFileAuthenticator,
    hash_password,
    verify_password,
)
from smtpkit.auth.sasl import OAuthToken, SASLError

__all__ = [
    "AuthResult",
    "ChainAuthenticator",
    "LoginPassword",
    "MemoryAuthenticator",
    "OAuthAuthenticator",
    "OAuthToken",
    "PasswordFileAuthenticator",
    "SASLError",
    "hash_password",
    "verify_password",
]
