"""Fixtures for the tests against external programs (swaks, openssl)."""

from __future__ import annotations

import shutil
import ssl

import pytest

from . import LOOP_KINDS, Certificates, certificates, in_ci


def _program(name: str) -> str:
    """The path of an external program; skip without it, but fail in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: apt-get install {name})"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def swaks() -> str:
    """The path of swaks."""
    return _program("swaks")


@pytest.fixture
def openssl() -> str:
    """The path of the openssl command."""
    return _program("openssl")


@pytest.fixture(params=LOOP_KINDS)
def loop_kind(request: pytest.FixtureRequest) -> str:
    """Each test runs on asyncio's own loop and on uvloop."""
    kind: str = request.param
    return kind


@pytest.fixture
def certs() -> Certificates:
    """The test run's CA and server certificate."""
    return certificates()


@pytest.fixture
def server_tls(certs: Certificates) -> ssl.SSLContext:
    """A server-side TLS context."""
    return certs.server_context()
