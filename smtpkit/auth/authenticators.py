"""Ready-made authenticators and the scrypt password hash format.

Each authenticator is a callable with the documented signature
``(server, session, envelope, mechanism, auth_data) -> AuthResult``. They are
plain synchronous functions: the SMTP class calls them on the event loop, so
what they cost is paid there (see :class:`PasswordFileAuthenticator`).

Hash format::

    scrypt$<n>$<r>$<p>$<salt, base64>$<hash, base64>

Password file format: one ``user:<hash>`` per line; ``#`` starts a comment
line; blank lines are ignored.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from smtpkit.auth._types import AuthResult, LoginPassword
from smtpkit.auth.sasl import OAuthToken

__all__ = [
    "Authenticator",
    "ChainAuthenticator",
    "MemoryAuthenticator",
    "OAuthAuthenticator",
    "PasswordFileAuthenticator",
    "check_user_name",
    "hash_password",
    "parse_password_lines",
    "read_password_file",
    "verify_password",
]

log = logging.getLogger("smtpkit.auth")

#: ``(server, session, envelope, mechanism, auth_data) -> AuthResult``
Authenticator = Callable[[Any, Any, Any, str, Any], AuthResult]

_SCHEME = "scrypt"
_SALT_BYTES = 16
_HASH_BYTES = 32
# Bounds that catch typos and keep one verification from eating the machine:
# scrypt needs about 128 * r * n bytes.
_MAX_N = 2**20
_MAX_R = 64
_MAX_P = 64
_MAX_MEMORY = 256 * 1024 * 1024


def _fail() -> AuthResult:
    return AuthResult(success=False, handled=False)


# --- the hash format ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, repr=False)
class _ScryptHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def compute(self, password: bytes) -> bytes:
        # Looked up on the module each call (not imported by name) so a test
        # can count the calls.
        return hashlib.scrypt(
            password,
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.digest),
            maxmem=_memory(self.n, self.r, self.p) + 1024 * 1024,
        )

    def matches(self, password: bytes) -> bool:
        return hmac.compare_digest(self.compute(password), self.digest)

    def encode(self) -> str:
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"{_SCHEME}${self.n}${self.r}${self.p}${salt}${digest}"


def _memory(n: int, r: int, p: int) -> int:
    # What OpenSSL allocates: the V array (n + 2 blocks) plus B (p blocks).
    return 128 * r * (n + 2) + 128 * r * p


def _check_params(n: int, r: int, p: int) -> None:
    if n < 2 or n > _MAX_N or n & (n - 1):
        raise ValueError(f"scrypt n={n}: expected a power of two between 2 and {_MAX_N}")
    if not 1 <= r <= _MAX_R:
        raise ValueError(f"scrypt r={r}: expected 1 to {_MAX_R}")
    if not 1 <= p <= _MAX_P:
        raise ValueError(f"scrypt p={p}: expected 1 to {_MAX_P}")
    if _memory(n, r, p) > _MAX_MEMORY:
        raise ValueError(
            f"scrypt n={n}, r={r}, p={p}: needs more than {_MAX_MEMORY // 2**20} MiB of memory"
        )


def _parse_hash(encoded: str) -> _ScryptHash:
    """Decode ``scrypt$n$r$p$salt$hash``; ValueError says which field is wrong."""
    fields = encoded.split("$")
    if len(fields) != 6 or fields[0] != _SCHEME:
        raise ValueError("expected 'scrypt$<n>$<r>$<p>$<salt>$<hash>'")
    n = _parse_int("n", fields[1])
    r = _parse_int("r", fields[2])
    p = _parse_int("p", fields[3])
    _check_params(n, r, p)
    salt = _parse_b64("salt", fields[4])
    digest = _parse_b64("hash", fields[5])
    if len(digest) < 16:
        raise ValueError(f"hash: expected at least 16 bytes, got {len(digest)}")
    return _ScryptHash(n, r, p, salt, digest)


def _parse_int(name: str, value: str) -> int:
    if not (value.isascii() and value.isdigit() and len(value) <= 8):
        raise ValueError(f"scrypt {name}={value!r}: expected a decimal integer")
    return int(value)


def _parse_b64(name: str, value: str) -> bytes:
    try:
        decoded = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{name}: expected standard base64") from None
    if not decoded:
        raise ValueError(f"{name}: expected standard base64, got an empty value")
    return decoded


def hash_password(password: str, *, n: int = 2**14, r: int = 8, p: int = 1) -> str:
    """Hash a password with scrypt and a fresh random salt.

    The defaults take about 50 ms and 16 MiB on a current machine.

    Args:
        password: the password; its UTF-8 bytes are hashed, without
            Unicode normalization.
        n: scrypt CPU/memory cost, a power of two.
        r: scrypt block size.
        p: scrypt parallelization.

    Returns:
        ``scrypt$<n>$<r>$<p>$<salt>$<hash>``, salt and hash in base64.

    Raises:
        ValueError: when a parameter is out of range.
    """
    _check_params(n, r, p)
    template = _ScryptHash(n, r, p, secrets.token_bytes(_SALT_BYTES), bytes(_HASH_BYTES))
    digest = template.compute(password.encode("utf-8"))
    return dataclasses.replace(template, digest=digest).encode()


def verify_password(password: str, encoded: str) -> bool:
    """Check a password against a hash made by :func:`hash_password`.

    Args:
        password: the password to check.
        encoded: ``scrypt$<n>$<r>$<p>$<salt>$<hash>``.

    Returns:
        Whether the password matches.

    Raises:
        ValueError: when ``encoded`` is not a valid hash, naming the field.
    """
    return _parse_hash(encoded).matches(password.encode("utf-8"))


# --- the password file -------------------------------------------------------


def check_user_name(user: str) -> None:
    """Refuse user names the password file cannot hold.

    Args:
        user: the name to check.

    Raises:
        ValueError: when the name is empty, starts with ``#``, or contains
            ``:``, whitespace or control characters.
    """
    if not user:
        raise ValueError("user name: expected a non-empty name")
    if user.startswith("#"):
        raise ValueError(f"user name {user!r}: must not start with '#'")
    if ":" in user or any(ch.isspace() or not ch.isprintable() for ch in user):
        raise ValueError(
            f"user name {user!r}: must not contain ':', whitespace or control characters"
        )


def read_password_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read a password file into ``{user: encoded hash}``, checking every line.

    Args:
        path: the file.

    Returns:
        The users in file order.

    Raises:
        ValueError: for a malformed line, as ``<file>:<line>: <problem>``.
        OSError: when the file cannot be read.
    """
    with open(path, encoding="utf-8") as file:
        return parse_password_lines(file.read().splitlines(), os.fspath(path))


def parse_password_lines(lines: list[str], filename: str) -> dict[str, str]:
    """Parse the lines of a password file (see :func:`read_password_file`).

    Args:
        lines: the lines, without line endings.
        filename: the name used in error messages.

    Returns:
        ``{user: encoded hash}`` in file order.

    Raises:
        ValueError: for a malformed line, as ``<file>:<line>: <problem>``.
    """
    users: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        try:
            entry = _parse_line(line)
        except ValueError as exc:
            raise ValueError(f"{filename}:{number}: {exc}") from None
        if entry is None:
            continue
        user, encoded = entry
        if user in users:
            raise ValueError(f"{filename}:{number}: user {user!r} is listed twice")
        users[user] = encoded
    return users


def _parse_line(line: str) -> tuple[str, str] | None:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    user, colon, encoded = stripped.partition(":")
    if not colon:
        raise ValueError("expected 'user:scrypt$<n>$<r>$<p>$<salt>$<hash>', found no ':'")
    check_user_name(user)
    try:
        _parse_hash(encoded)
    except ValueError as exc:
        raise ValueError(f"user {user!r}: {exc}") from None
    return user, encoded


# --- authenticators ----------------------------------------------------------


class MemoryAuthenticator:
    """Check PLAIN/LOGIN credentials against plain-text passwords in memory.

    Meant for tests and small setups. Passwords are kept only as keyed
    digests, and every attempt (known user or not) costs one digest and one
    :func:`hmac.compare_digest`, so timing does not tell which users exist.

    Args:
        users: ``{user name: password}``.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._key = secrets.token_bytes(32)
        self._digests = {user: self._digest(pw.encode("utf-8")) for user, pw in users.items()}
        self._dummy = self._digest(secrets.token_bytes(16))

    def _digest(self, password: bytes) -> bytes:
        return hmac.new(self._key, password, hashlib.sha256).digest()

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Authenticate one attempt.

        Returns:
            Success with ``auth_data`` set to the :class:`LoginPassword`, or
            ``AuthResult(success=False, handled=False)``.
        """
        if not isinstance(auth_data, LoginPassword):
            return _fail()
        expected = _lookup(self._digests, auth_data.login)
        known = expected is not None
        # Compare even for unknown users: the same work either way.
        same = hmac.compare_digest(self._digest(auth_data.password), expected or self._dummy)
        if known and same:
            return AuthResult(success=True, auth_data=auth_data)
        return _fail()

    def __repr__(self) -> str:
        return f"MemoryAuthenticator(<{len(self._digests)} users>)"


class PasswordFileAuthenticator:
    """Check PLAIN/LOGIN credentials against a file of scrypt hashes.

    The file holds one ``user:scrypt$n$r$p$salt$hash`` per line (``#``
    comments and blank lines allowed); ``python -m smtpkit.auth add-user``
    writes it. It is read at construction and read again whenever its
    modification time, size or inode changes. A file that turns malformed (or
    disappears) later is logged and the last good contents stay in use.

    Cost: one scrypt run per attempt, about 50 ms with the default
    parameters, on the event loop's thread. Unknown users run the same scrypt
    against a dummy hash, so timing does not reveal who exists.

    Args:
        path: the password file.

    Raises:
        ValueError: for a malformed line, as ``<file>:<line>: <problem>``.
        OSError: when the file cannot be read.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        # (mtime, size, inode) of the version last read, good or bad.
        self._signature: tuple[int, int, int] | None = None
        self._users: dict[str, _ScryptHash] = {}
        self._dummy = _ScryptHash(2**14, 8, 1, bytes(_SALT_BYTES), bytes(_HASH_BYTES))
        self.reload()

    def reload(self) -> None:
        """Read the file now.

        Raises:
            ValueError: for a malformed line, as ``<file>:<line>: <problem>``.
            OSError: when the file cannot be read.
        """
        with self._lock:
            signature = self._stat()
            users = {u: _parse_hash(h) for u, h in read_password_file(self.path).items()}
            self._users = users
            self._signature = signature
            if users:
                first = next(iter(users.values()))
                self._dummy = dataclasses.replace(first, salt=secrets.token_bytes(_SALT_BYTES))
        log.info("read %d users from %s", len(users), self.path)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        signature = self._stat()
        if signature == self._signature:
            return
        try:
            self.reload()
        except (OSError, ValueError) as exc:
            # Remember the broken version so it is reported once, not on
            # every attempt; the next change is read again.
            self._signature = signature
            log.error("keeping the previous users of %s: %s", self.path, exc)

    @property
    def users(self) -> list[str]:
        """The user names currently loaded, in file order."""
        return list(self._users)

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Authenticate one attempt (reading the file again if it changed).

        Returns:
            Success with ``auth_data`` set to the :class:`LoginPassword`, or
            ``AuthResult(success=False, handled=False)``.
        """
        if not isinstance(auth_data, LoginPassword):
            return _fail()
        self._refresh()
        stored = _lookup(self._users, auth_data.login)
        if stored is None:
            self._dummy.matches(auth_data.password)
            return _fail()
        if stored.matches(auth_data.password):
            return AuthResult(success=True, auth_data=auth_data)
        return _fail()

    def __repr__(self) -> str:
        return f"PasswordFileAuthenticator({self.path!r}, <{len(self._users)} users>)"


class OAuthAuthenticator:
    """Adapt a token check to the authenticator signature (XOAUTH2, OAUTHBEARER).

    ``verify`` receives the :class:`OAuthToken` and answers:

    * ``True``: the token is good for the user it claims;
    * a string: the token is good and belongs to this identity. The result's
      ``auth_data`` is the token with ``user`` set to it; if the client
      claimed a different user, the attempt fails;
    * ``False`` or ``None``: the token is refused.

    Exceptions from ``verify`` propagate. ``verify`` runs on the event loop's
    thread: validate locally (a JWT signature, a cache) rather than calling a
    remote service on every attempt.

    Args:
        verify: the token check.
    """

    def __init__(self, verify: Callable[[OAuthToken], bool | str | None]) -> None:
        self.verify = verify

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Authenticate one attempt.

        Returns:
            Success with ``auth_data`` set to the :class:`OAuthToken`, or
            ``AuthResult(success=False, handled=False)``.
        """
        if not isinstance(auth_data, OAuthToken):
            return _fail()
        verdict = self.verify(auth_data)
        if verdict is True:
            return AuthResult(success=True, auth_data=auth_data)
        if isinstance(verdict, str) and verdict:
            if auth_data.user is not None and auth_data.user != verdict:
                return _fail()
            return AuthResult(success=True, auth_data=dataclasses.replace(auth_data, user=verdict))
        return _fail()

    def __repr__(self) -> str:
        return f"OAuthAuthenticator({self.verify!r})"


class ChainAuthenticator:
    """Try several authenticators in order; the first success wins.

    When all fail, the first failure carrying a ``message`` is returned (so
    that, say, a temporary ``454`` from a backend reaches the client);
    otherwise the last failure.

    Args:
        *authenticators: the authenticators, tried in this order.

    Raises:
        ValueError: when no authenticator is given.
    """

    def __init__(self, *authenticators: Authenticator) -> None:
        if not authenticators:
            raise ValueError("ChainAuthenticator: expected at least one authenticator")
        self.authenticators = authenticators

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        """Authenticate one attempt.

        Returns:
            The first successful result, or a failure as described above.
        """
        failures: list[AuthResult] = []
        for authenticator in self.authenticators:
            result = authenticator(server, session, envelope, mechanism, auth_data)
            if result.success:
                return result
            failures.append(result)
        with_message = [f for f in failures if f.message is not None]
        return with_message[0] if with_message else failures[-1]

    def __repr__(self) -> str:
        inner = ", ".join(repr(a) for a in self.authenticators)
        return f"ChainAuthenticator({inner})"


_T = TypeVar("_T")


def _lookup(table: Mapping[str, _T], login: bytes) -> _T | None:
    try:
        return table.get(login.decode("utf-8"))
    except UnicodeDecodeError:
        return None
