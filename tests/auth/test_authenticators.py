"""The ready-made authenticators, against real password files."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from smtpkit.auth import (
    AuthResult,
    ChainAuthenticator,
    LoginPassword,
    MemoryAuthenticator,
    OAuthAuthenticator,
    OAuthToken,
    PasswordFileAuthenticator,
    hash_password,
    verify_password,
)
from smtpkit.auth.authenticators import read_password_file

FAST = {"n": 2**10, "r": 8, "p": 1}


def attempt(authenticator: Any, login: bytes, password: bytes) -> AuthResult:
    result = authenticator(None, None, None, "PLAIN", LoginPassword(login, password))
    assert isinstance(result, AuthResult)
    return result


def assert_refused(result: AuthResult) -> None:
    assert result.success is False
    assert result.handled is False
    assert result.message is None
    assert result.auth_data is None


def write_users(path: Path, users: dict[str, str], header: str = "") -> None:
    lines = [f"{user}:{hash_password(pw, **FAST)}" for user, pw in users.items()]
    path.write_text(header + "\n".join(lines) + "\n", encoding="utf-8")


def bump_mtime(path: Path) -> None:
    # Coarse file system clocks can give two quick writes the same mtime.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000_000))


# --- hash format -------------------------------------------------------------


def test_hash_round_trip() -> None:
    encoded = hash_password("s\u00e9cret", **FAST)
    scheme, n, r, p, salt, digest = encoded.split("$")
    assert (scheme, n, r, p) == ("scrypt", "1024", "8", "1")
    assert salt and digest
    assert verify_password("s\u00e9cret", encoded) is True
    assert verify_password("secret", encoded) is False
    assert verify_password("", encoded) is False


def test_hash_salts_differ() -> None:
    assert hash_password("pw", **FAST) != hash_password("pw", **FAST)


def test_hash_default_parameters() -> None:
    encoded = hash_password("pw")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert verify_password("pw", encoded)


def test_hash_matches_stdlib_scrypt() -> None:
    encoded = hash_password("pw", **FAST)
    _, n, r, p, salt, digest = encoded.split("$")
    expected = hashlib.scrypt(
        b"pw", salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    assert base64.b64decode(digest) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": 1000}, "scrypt n=1000: expected a power of two between 2 and 1048576"),
        ({"n": 1}, "scrypt n=1: expected a power of two"),
        ({"n": 2**21}, "scrypt n=2097152: expected a power of two"),
        ({"r": 0}, "scrypt r=0: expected 1 to 64"),
        ({"p": 65}, "scrypt p=65: expected 1 to 64"),
        ({"n": 2**20, "r": 8}, "needs more than 256 MiB of memory"),
    ],
)
def test_hash_refuses_bad_parameters(params: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        hash_password("pw", **params)


GOOD = hash_password("pw", **FAST)
SALT, DIGEST = GOOD.split("$")[4:]


@pytest.mark.parametrize(
    ("encoded", "message"),
    [
        ("bcrypt$1024$8$1$" + SALT + "$" + DIGEST, "expected 'scrypt\\$<n>"),
        ("scrypt$1024$8$1$" + SALT, "expected 'scrypt\\$<n>"),
        ("scrypt$x$8$1$" + SALT + "$" + DIGEST, "scrypt n='x': expected a decimal integer"),
        ("scrypt$1024$-8$1$" + SALT + "$" + DIGEST, "scrypt r='-8': expected a decimal"),
        ("scrypt$1000$8$1$" + SALT + "$" + DIGEST, "scrypt n=1000: expected a power of two"),
        ("scrypt$1024$8$1$not base64!$" + DIGEST, "salt: expected standard base64"),
        ("scrypt$1024$8$1$$" + DIGEST, "salt: expected standard base64, got an empty"),
        ("scrypt$1024$8$1$" + SALT + "$\u00e9", "hash: expected standard base64"),
        ("scrypt$1024$8$1$" + SALT + "$AAAA", "hash: expected at least 16 bytes, got 3"),
    ],
    # Named, not shown: the salt is random, and the test ids must be the same each run.
    ids=[
        "scheme",
        "fields",
        "n-text",
        "r-negative",
        "n-not-power",
        "salt-not-base64",
        "salt-empty",
        "hash-not-ascii",
        "hash-short",
    ],
)
def test_verify_refuses_malformed_hash(encoded: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        verify_password("pw", encoded)


# --- MemoryAuthenticator -----------------------------------------------------


def test_memory_accepts_right_password() -> None:
    auth = MemoryAuthenticator({"alice": "wonderland", "bob": "builder"})
    credentials = LoginPassword(b"alice", b"wonderland")
    result = auth(None, None, None, "LOGIN", credentials)
    assert result.success is True
    assert result.auth_data is credentials


@pytest.mark.parametrize(
    ("login", "password"),
    [
        (b"alice", b"builder"),
        (b"alice", b""),
        (b"alice", b"wonderland "),
        (b"Alice", b"wonderland"),
        (b"carol", b"wonderland"),
        (b"", b""),
        (b"\xff", b"wonderland"),
    ],
)
def test_memory_refuses(login: bytes, password: bytes) -> None:
    auth = MemoryAuthenticator({"alice": "wonderland", "bob": "builder"})
    assert_refused(attempt(auth, login, password))


def test_memory_non_ascii_password() -> None:
    auth = MemoryAuthenticator({"j\u00f6rg": "p\u00e4ss"})
    assert attempt(auth, "j\u00f6rg".encode(), "p\u00e4ss".encode()).success
    assert_refused(attempt(auth, "j\u00f6rg".encode(), "p\u00e4ss".encode("latin-1")))


def test_memory_ignores_other_auth_data() -> None:
    auth = MemoryAuthenticator({"alice": "wonderland"})
    assert_refused(auth(None, None, None, "XOAUTH2", OAuthToken("alice", "wonderland", "X")))
    assert_refused(auth(None, None, None, "PLAIN", ("alice", "wonderland")))


def test_memory_repr_hides_passwords() -> None:
    auth = MemoryAuthenticator({"alice": "wonderland"})
    result = attempt(auth, b"alice", b"wonderland")
    assert result.success
    for text in (repr(auth), str(auth), repr(result), str(result.auth_data)):
        assert "wonderland" not in text
    assert repr(auth) == "MemoryAuthenticator(<1 users>)"


# --- PasswordFileAuthenticator -----------------------------------------------


@pytest.fixture
def passwd(tmp_path: Path) -> Path:
    path = tmp_path / "passwd"
    header = "# smtpkit users\n\n   \n"
    write_users(path, {"alice": "wonderland", "bob@example.com": "b\u00fcilder"}, header)
    return path


def test_file_accepts_right_password(passwd: Path) -> None:
    auth = PasswordFileAuthenticator(passwd)
    result = attempt(auth, b"alice", b"wonderland")
    assert result.success is True
    assert result.auth_data == LoginPassword(b"alice", b"wonderland")
    assert attempt(auth, b"bob@example.com", "b\u00fcilder".encode()).success


@pytest.mark.parametrize(
    ("login", "password"),
    [(b"alice", b"builder"), (b"alice", b""), (b"carol", b"wonderland"), (b"\xff", b"x")],
)
def test_file_refuses(passwd: Path, login: bytes, password: bytes) -> None:
    assert_refused(attempt(PasswordFileAuthenticator(passwd), login, password))


def test_file_ignores_other_auth_data(passwd: Path) -> None:
    auth = PasswordFileAuthenticator(passwd)
    assert_refused(auth(None, None, None, "XOAUTH2", OAuthToken("alice", "wonderland", "X")))


def count_scrypt(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the real scrypt runs (the real function still runs)."""
    calls: list[int] = []
    real: Callable[..., bytes] = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(kwargs["n"])
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    return calls


def test_file_unknown_user_spends_one_scrypt(passwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auth = PasswordFileAuthenticator(passwd)
    calls = count_scrypt(monkeypatch)
    assert_refused(attempt(auth, b"nobody", b"wonderland"))
    assert_refused(attempt(auth, b"\xff", b"wonderland"))
    assert_refused(attempt(auth, b"alice", b"nope"))
    # The same work, with the same parameters, known user or not.
    assert calls == [2**10, 2**10, 2**10]


def test_file_reloads_on_change(passwd: Path) -> None:
    auth = PasswordFileAuthenticator(passwd)
    assert attempt(auth, b"alice", b"wonderland").success
    write_users(passwd, {"alice": "looking-glass", "carol": "c"})
    bump_mtime(passwd)
    assert_refused(attempt(auth, b"alice", b"wonderland"))
    assert attempt(auth, b"alice", b"looking-glass").success
    assert attempt(auth, b"carol", b"c").success
    assert_refused(attempt(auth, b"bob@example.com", "b\u00fcilder".encode()))
    assert auth.users == ["alice", "carol"]


def test_file_keeps_last_good_users_when_broken(
    passwd: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = PasswordFileAuthenticator(passwd)
    passwd.write_text("alice:half-written\n", encoding="utf-8")
    bump_mtime(passwd)
    with caplog.at_level(logging.ERROR, logger="smtpkit.auth"):
        assert attempt(auth, b"alice", b"wonderland").success
        assert attempt(auth, b"alice", b"wonderland").success
    [record] = caplog.records  # reported once, not on every attempt
    assert f"keeping the previous users of {passwd}" in record.getMessage()
    assert f"{passwd}:1: user 'alice'" in record.getMessage()
    assert "wonderland" not in caplog.text

    caplog.clear()
    passwd.unlink()
    with caplog.at_level(logging.ERROR, logger="smtpkit.auth"):
        assert attempt(auth, b"alice", b"wonderland").success
        assert attempt(auth, b"alice", b"wonderland").success
    assert len(caplog.records) == 1
    assert "No such file" in caplog.text

    write_users(passwd, {"alice": "fixed"})
    assert attempt(auth, b"alice", b"fixed").success
    assert_refused(attempt(auth, b"alice", b"wonderland"))


@pytest.mark.parametrize(
    ("content", "line", "problem"),
    [
        ("alice\n", 1, "expected 'user:scrypt$<n>$<r>$<p>$<salt>$<hash>', found no ':'"),
        ("# ok\n\nalice:" + GOOD + "\nbob:plain\n", 4, "user 'bob': expected 'scrypt$<n>"),
        (":" + GOOD + "\n", 1, "user name: expected a non-empty name"),
        ("al ice:" + GOOD + "\n", 1, "user name 'al ice': must not contain ':', whitespace"),
        ("alice:" + GOOD + "\nalice:" + GOOD + "\n", 2, "user 'alice' is listed twice"),
        (
            "alice:scrypt$1024$8$1$" + SALT + "$AAAA\n",
            1,
            "user 'alice': hash: expected at least 16 bytes, got 3",
        ),
    ],
    ids=["no-colon", "plain-password", "empty-name", "space-in-name", "twice", "short-hash"],
)
def test_file_malformed_line_names_file_and_line(
    tmp_path: Path, content: str, line: int, problem: str
) -> None:
    path = tmp_path / "users"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError) as info:
        PasswordFileAuthenticator(path)
    assert str(info.value).startswith(f"{path}:{line}: {problem}")
    with pytest.raises(ValueError, match=f"^{re.escape(str(path))}:{line}: "):
        read_password_file(path)


def test_file_missing_at_construction(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        PasswordFileAuthenticator(tmp_path / "missing")


def test_file_repr_hides_hashes(passwd: Path) -> None:
    auth = PasswordFileAuthenticator(passwd)
    text = repr(auth)
    assert text == f"PasswordFileAuthenticator({str(passwd)!r}, <2 users>)"
    assert "scrypt" not in text


# --- OAuthAuthenticator ------------------------------------------------------


def make_token(user: str | None = "alice@example.com") -> OAuthToken:
    return OAuthToken(user=user, token="tok-123", mechanism="XOAUTH2")


def test_oauth_true_accepts_claimed_user() -> None:
    seen: list[OAuthToken] = []

    def verify(token: OAuthToken) -> bool:
        seen.append(token)
        return token.token == "tok-123"

    auth = OAuthAuthenticator(verify)
    token = make_token()
    result = auth(None, None, None, "XOAUTH2", token)
    assert result.success is True
    assert result.auth_data is token
    assert seen == [token]
    assert_refused(auth(None, None, None, "XOAUTH2", OAuthToken("a", "other", "XOAUTH2")))


def test_oauth_string_names_the_identity() -> None:
    auth = OAuthAuthenticator(lambda token: "alice@example.com")
    result = auth(None, None, None, "OAUTHBEARER", make_token(user=None))
    assert result.success is True
    assert result.auth_data == OAuthToken("alice@example.com", "tok-123", "XOAUTH2")
    same = auth(None, None, None, "OAUTHBEARER", make_token())
    assert same.success is True


def test_oauth_string_for_another_user_is_refused() -> None:
    auth = OAuthAuthenticator(lambda token: "mallory@example.com")
    assert_refused(auth(None, None, None, "XOAUTH2", make_token()))


@pytest.mark.parametrize("verdict", [False, None, ""])
def test_oauth_refusals(verdict: bool | str | None) -> None:
    auth = OAuthAuthenticator(lambda token: verdict)
    assert_refused(auth(None, None, None, "XOAUTH2", make_token()))


def test_oauth_ignores_other_auth_data() -> None:
    calls: list[OAuthToken] = []

    def verify(token: OAuthToken) -> bool:
        calls.append(token)
        return True

    auth = OAuthAuthenticator(verify)
    assert_refused(auth(None, None, None, "PLAIN", LoginPassword(b"a", b"tok-123")))
    assert calls == []


def test_oauth_result_repr_hides_token() -> None:
    result = OAuthAuthenticator(lambda token: True)(None, None, None, "XOAUTH2", make_token())
    assert result.success
    assert "tok-123" not in repr(result)
    assert "tok-123" not in repr(result.auth_data)


# --- ChainAuthenticator ------------------------------------------------------


def recording(name: str, result: AuthResult, calls: list[str]) -> Any:
    def authenticator(*args: Any) -> AuthResult:
        calls.append(name)
        return result

    return authenticator


def test_chain_first_success_wins() -> None:
    calls: list[str] = []
    ok1 = AuthResult(success=True, auth_data="one")
    ok2 = AuthResult(success=True, auth_data="two")
    chain = ChainAuthenticator(
        recording("no", AuthResult(success=False, handled=False), calls),
        recording("ok1", ok1, calls),
        recording("ok2", ok2, calls),
    )
    assert chain(None, None, None, "PLAIN", None) is ok1
    assert calls == ["no", "ok1"]


def test_chain_of_real_authenticators(passwd: Path) -> None:
    chain = ChainAuthenticator(
        MemoryAuthenticator({"robot": "beep"}),
        PasswordFileAuthenticator(passwd),
        OAuthAuthenticator(lambda token: token.token == "tok-123"),
    )
    assert attempt(chain, b"robot", b"beep").success
    assert attempt(chain, b"alice", b"wonderland").success
    assert chain(None, None, None, "XOAUTH2", make_token()).success
    assert_refused(attempt(chain, b"alice", b"beep"))
    assert "wonderland" not in repr(chain) and "beep" not in repr(chain)


def test_chain_failure_keeps_a_message() -> None:
    calls: list[str] = []
    temporary = AuthResult(success=False, handled=False, message="454 4.7.0 Try again later")
    plain_no = AuthResult(success=False, handled=False)
    chain = ChainAuthenticator(
        recording("a", plain_no, calls),
        recording("b", temporary, calls),
        recording("c", plain_no, calls),
    )
    assert chain(None, None, None, "PLAIN", None) is temporary
    assert calls == ["a", "b", "c"]
    only_plain = ChainAuthenticator(recording("d", plain_no, calls))
    assert only_plain(None, None, None, "PLAIN", None) is plain_no


def test_chain_needs_an_authenticator() -> None:
    with pytest.raises(ValueError, match="expected at least one authenticator"):
        ChainAuthenticator()
