"""Tables and fuzzing for the SASL response parsers."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpkit.auth import LoginPassword, OAuthToken, SASLError
from smtpkit.auth.sasl import (
    oauthbearer_error_challenge,
    parse_oauthbearer,
    parse_plain,
    parse_xoauth2,
    xoauth2_error_challenge,
)

SPLIT = "501 5.5.2 Can't split auth value"
TOKEN = "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg=="


def xo_bad(why: str) -> str:
    return f"501 5.5.2 Can't parse XOAUTH2 response: {why}"


def ob_bad(why: str) -> str:
    return f"501 5.5.2 Can't parse OAUTHBEARER response: {why}"


# --- PLAIN -------------------------------------------------------------------

PLAIN_VALID = [
    (b"\x00alice\x00secret", LoginPassword(b"alice", b"secret")),
    (b"admin\x00alice\x00secret", LoginPassword(b"alice", b"secret")),
    (b"\x00\x00secret", LoginPassword(b"", b"secret")),
    (b"\x00alice\x00", LoginPassword(b"alice", b"")),
    (b"\x00\x00", LoginPassword(b"", b"")),
    (b"\x00al ice\x00p\xc3\xa4ss word", LoginPassword(b"al ice", b"p\xc3\xa4ss word")),
    (b"\x00\xff\xfe\x00\x01\x02", LoginPassword(b"\xff\xfe", b"\x01\x02")),
]


@pytest.mark.parametrize(("data", "expected"), PLAIN_VALID)
def test_plain_valid(data: bytes, expected: LoginPassword) -> None:
    assert tuple(parse_plain(data)) == tuple(expected)


@pytest.mark.parametrize(
    "data",
    [b"", b"alice", b"\x00alice", b"alice\x00secret", b"\x00a\x00b\x00", b"\x00\x00\x00\x00"],
)
def test_plain_does_not_split(data: bytes) -> None:
    with pytest.raises(SASLError) as info:
        parse_plain(data)
    assert info.value.reply == SPLIT
    assert str(info.value) == SPLIT


# --- XOAUTH2 -----------------------------------------------------------------

XOAUTH2_VALID = [
    (
        f"user=someuser@example.com\x01auth=Bearer {TOKEN}\x01\x01",
        OAuthToken(user="someuser@example.com", token=TOKEN, mechanism="XOAUTH2"),
    ),
    (
        "auth=bearer ya29.a0-_~+/x\x01user=bob\x01\x01",
        OAuthToken(user="bob", token="ya29.a0-_~+/x", mechanism="XOAUTH2"),
    ),
    (
        "user=bob\x01auth=BEARER   tok\x01extra=ignored value\x01\x01",
        OAuthToken(user="bob", token="tok", mechanism="XOAUTH2"),
    ),
    ("auth=Bearer tok\x01\x01", OAuthToken(user=None, token="tok", mechanism="XOAUTH2")),
    (
        "user=j\u00f6rg@b\u00fccher.example\x01auth=Bearer t==\x01\x01",
        OAuthToken(user="j\u00f6rg@b\u00fccher.example", token="t==", mechanism="XOAUTH2"),
    ),
]


@pytest.mark.parametrize(("text", "expected"), XOAUTH2_VALID)
def test_xoauth2_valid(text: str, expected: OAuthToken) -> None:
    assert parse_xoauth2(text.encode()) == expected


XOAUTH2_MALFORMED = [
    (b"user=a\xff\x01auth=Bearer t\x01\x01", "not UTF-8"),
    (b"", "missing terminator"),
    (b"user=a\x01auth=Bearer t", "missing terminator"),
    (b"user=a\x01auth=Bearer t\x01", "missing terminator"),
    (b"\x01", "missing auth"),
    (b"user=a\x01\x01", "missing auth"),
    (b"user=a\x01\x01auth=Bearer t\x01\x01", "data after terminator"),
    (b"user=a\x01auth=Bearer t\x01\x01\x01", "data after terminator"),
    (b"usera\x01auth=Bearer t\x01\x01", "bad key"),
    (b"=a\x01auth=Bearer t\x01\x01", "bad key"),
    (b"us-er=a\x01auth=Bearer t\x01\x01", "bad key"),
    (b"user=a\x00\x01auth=Bearer t\x01\x01", "bad value"),
    (b"user=a\x01user=b\x01auth=Bearer t\x01\x01", "duplicate key"),
    (b"user=a\x01auth=Bearer t\x01auth=Bearer u\x01\x01", "duplicate key"),
    (b"user=a\x01auth=Basic dXNlcjpwYXNz\x01\x01", "auth is not a Bearer token"),
    (b"user=a\x01auth=Bearer\x01\x01", "auth is not a Bearer token"),
    (b"user=a\x01auth=Bearer \x01\x01", "auth is not a Bearer token"),
    (b"user=a\x01auth=Bearer t t\x01\x01", "auth is not a Bearer token"),
    (b"user=a\x01auth=Bearer t=x\x01\x01", "auth is not a Bearer token"),
    (b"user=a\x01auth=Bearer t\r\n\x01\x01", "auth is not a Bearer token"),
    (b"user=\x01auth=Bearer t\x01\x01", "bad user"),
    (b"user=a\r\nb\x01auth=Bearer t\x01\x01", "bad user"),
    (b"user=a\xc2\x85b\x01auth=Bearer t\x01\x01", "bad user"),
]


@pytest.mark.parametrize(("data", "why"), XOAUTH2_MALFORMED)
def test_xoauth2_malformed(data: bytes, why: str) -> None:
    with pytest.raises(SASLError) as info:
        parse_xoauth2(data)
    assert info.value.reply == xo_bad(why)


# --- OAUTHBEARER -------------------------------------------------------------

OAUTHBEARER_VALID = [
    # RFC 7628 §4.1 (SMTP example, decoded).
    (
        f"n,a=user@example.com,\x01host=server.example.com\x01port=587\x01"
        f"auth=Bearer {TOKEN}\x01\x01",
        OAuthToken(
            user="user@example.com",
            token=TOKEN,
            mechanism="OAUTHBEARER",
            host="server.example.com",
            port=587,
        ),
    ),
    ("n,,\x01auth=Bearer tok\x01\x01", OAuthToken(None, "tok", "OAUTHBEARER")),
    ("y,,\x01auth=Bearer tok\x01\x01", OAuthToken(None, "tok", "OAUTHBEARER")),
    (
        "n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01",
        OAuthToken("a,b=c", "tok", "OAUTHBEARER"),
    ),
    (
        "n,,\x01auth=Bearer tok\x01port=0\x01ext=a b\tc\r\n\x01\x01",
        OAuthToken(None, "tok", "OAUTHBEARER", port=0),
    ),
    (
        "n,,\x01port=65535\x01auth=bearer tok\x01\x01",
        OAuthToken(None, "tok", "OAUTHBEARER", port=65535),
    ),
]


@pytest.mark.parametrize(("text", "expected"), OAUTHBEARER_VALID)
def test_oauthbearer_valid(text: str, expected: OAuthToken) -> None:
    assert parse_oauthbearer(text.encode()) == expected


OAUTHBEARER_MALFORMED = [
    (b"n,,\x01auth=Bearer \xff\x01\x01", "not UTF-8"),
    (b"\x01", "no credentials"),
    (b"", "bad GS2 header"),
    (b"p=tls-unique,,\x01auth=Bearer t\x01\x01", "channel binding is not supported"),
    (b"F,n,,\x01auth=Bearer t\x01\x01", "bad GS2 header"),
    (b"x,,\x01auth=Bearer t\x01\x01", "bad GS2 header"),
    (b"n\x01auth=Bearer t\x01\x01", "bad GS2 header"),
    (b"n,b=x,\x01auth=Bearer t\x01\x01", "bad GS2 header"),
    (b"n,a=,\x01auth=Bearer t\x01\x01", "bad authzid"),
    (b"n,a=user\x01auth=Bearer t\x01\x01", "bad authzid"),
    (b"n,a=us=er,\x01auth=Bearer t\x01\x01", "bad authzid"),
    (b"n,a=us=2cer,\x01auth=Bearer t\x01\x01", "bad authzid"),
    (b"n,a=us\ter,\x01auth=Bearer t\x01\x01", "bad authzid"),
    (b"n,,auth=Bearer t\x01\x01", "missing separator after GS2 header"),
    (b"n,a=user,auth=Bearer t\x01\x01", "missing separator after GS2 header"),
    (b"n,,\x01auth=Bearer t\x01", "missing terminator"),
    (b"n,,\x01auth=Bearer t", "missing terminator"),
    (b"n,,", "missing separator after GS2 header"),
    (b"n,,\x01", "missing terminator"),
    (b"n,,\x01\x01", "missing auth"),
    (b"n,,\x01host=h\x01\x01", "missing auth"),
    (b"n,,\x01auth=Bearer t\x01\x01\x01", "data after terminator"),
    (b"n,,\x01auth=Bearer t\x01\x01host=h\x01\x01", "data after terminator"),
    (b"n,,\x01auth\x01\x01", "bad key"),
    (b"n,,\x01h0st=x\x01auth=Bearer t\x01\x01", "bad key"),
    (b"n,,\x01auth=Bearer t\x01x=\x7f\x01\x01", "bad value"),
    (b"n,,\x01auth=Bearer t\x01host=a\x01host=b\x01\x01", "duplicate key"),
    (b"n,,\x01auth=Token t\x01\x01", "auth is not a Bearer token"),
    (b"n,,\x01auth=Bearer t\x01host=\x01\x01", "bad host"),
    (b"n,,\x01auth=Bearer t\x01host=a\r\nb\x01\x01", "bad host"),
    (b"n,,\x01auth=Bearer t\x01port=\x01\x01", "bad port"),
    (b"n,,\x01auth=Bearer t\x01port=65536\x01\x01", "bad port"),
    (b"n,,\x01auth=Bearer t\x01port=-1\x01\x01", "bad port"),
    (b"n,,\x01auth=Bearer t\x01port=5 87\x01\x01", "bad port"),
    (b"n,,\x01auth=Bearer t\x01port=" + b"9" * 5000 + b"\x01\x01", "bad port"),
    ("n,,\x01auth=Bearer t\x01port=\u0665\x01\x01".encode(), "bad port"),
]


@pytest.mark.parametrize(("data", "why"), OAUTHBEARER_MALFORMED)
def test_oauthbearer_malformed(data: bytes, why: str) -> None:
    with pytest.raises(SASLError) as info:
        parse_oauthbearer(data)
    assert info.value.reply == ob_bad(why)


# --- the token stays secret --------------------------------------------------


def test_token_never_in_repr_or_str() -> None:
    token = parse_oauthbearer(f"n,a=u,\x01auth=Bearer {TOKEN}\x01\x01".encode())
    assert token.token == TOKEN
    for text in (repr(token), str(token), repr([token])):
        assert TOKEN not in text
        assert "token=..." in text
        assert "user='u'" in text


def test_errors_never_echo_client_data() -> None:
    with pytest.raises(SASLError) as info:
        parse_xoauth2(b"user=a\x01auth=Bearer sekrit!\r\n\x01\x01")
    assert "sekrit" not in info.value.reply
    assert "\r" not in info.value.reply


# --- error challenges --------------------------------------------------------


def test_oauthbearer_error_challenge_matches_rfc_example() -> None:
    # The decoded 334 challenge of RFC 7628 §4.3.
    expected = base64.b64decode(
        "eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3Blbmlk"
        "LWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1j"
        "b25maWd1cmF0aW9uIn0="
    )
    challenge = oauthbearer_error_challenge(
        scope="example_scope",
        openid_configuration="https://example.com/.well-known/openid-configuration",
    )
    assert challenge == expected


def test_oauthbearer_error_challenge_minimal() -> None:
    assert json.loads(oauthbearer_error_challenge()) == {"status": "invalid_token"}
    assert json.loads(oauthbearer_error_challenge("insufficient_scope", scope="a b")) == {
        "status": "insufficient_scope",
        "scope": "a b",
    }


def test_xoauth2_error_challenge() -> None:
    assert json.loads(xoauth2_error_challenge()) == {"status": "401", "schemes": "bearer"}
    challenge = xoauth2_error_challenge("400", "bearer mac", "https://mail.google.com/")
    assert challenge == (
        b'{"status":"400","schemes":"bearer mac","scope":"https://mail.google.com/"}'
    )


# --- fuzzing -----------------------------------------------------------------

PARSERS = [parse_plain, parse_xoauth2, parse_oauthbearer]


@pytest.mark.parametrize("parser", PARSERS)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_raise_only_sasl_error(
    parser: Callable[[bytes], object], data: bytes
) -> None:
    try:
        parser(data)
    except SASLError as exc:
        assert exc.reply.startswith("501 5.5.2 ")
        assert "\r" not in exc.reply and "\n" not in exc.reply


# Pieces that make the fuzzer reach past the first checks.
_PIECES = st.sampled_from(
    ["n,", "y,", "p=", "a=", ",", "=", "=2C", "=3D", "\x01", "auth", "Bearer ", "bearer",
     "host", "port", "user", "587", "tok", " ", "\r\n", "\x00", "\u00e9", "9" * 6]
)  # fmt: skip


@pytest.mark.parametrize("parser", PARSERS)
@given(pieces=st.lists(_PIECES, max_size=20))
def test_structured_noise_raises_only_sasl_error(
    parser: Callable[[bytes], object], pieces: list[str]
) -> None:
    try:
        parser("".join(pieces).encode())
    except SASLError as exc:
        assert exc.reply.startswith("501 5.5.2 ")


_NAMES = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")),
    min_size=1,
    max_size=20,
)
_TOKENS = st.from_regex(r"[A-Za-z0-9\-._~+/]{1,30}={0,2}", fullmatch=True)


@given(user=_NAMES, token=_TOKENS)
def test_xoauth2_round_trip(user: str, token: str) -> None:
    data = f"user={user}\x01auth=Bearer {token}\x01\x01".encode()
    assert parse_xoauth2(data) == OAuthToken(user, token, "XOAUTH2")


@given(
    authzid=st.none() | _NAMES,
    token=_TOKENS,
    host=st.none() | _NAMES,
    port=st.none() | st.integers(0, 65535),
)
def test_oauthbearer_round_trip(
    authzid: str | None, token: str, host: str | None, port: int | None
) -> None:
    header = "n,,"
    if authzid is not None:
        header = "n,a=" + authzid.replace("=", "=3D").replace(",", "=2C") + ","
    pairs = [f"auth=Bearer {token}"]
    if host is not None:
        pairs.append(f"host={host}")
    if port is not None:
        pairs.append(f"port={port}")
    data = (header + "\x01" + "".join(p + "\x01" for p in pairs) + "\x01").encode()
    assert parse_oauthbearer(data) == OAuthToken(authzid, token, "OAUTHBEARER", host, port)
