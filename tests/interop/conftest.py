"""Fixtures for the tests against external programs (swaks, openssl, Postfix, Exim, nginx)."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Generator, Iterator
from typing import NoReturn

import pytest

from . import LOOP_KINDS, Certificates, certificates, in_ci
from . import postfix as postfix_peer
from .bdat_dialogs import SIZE_LIMIT


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


def peer_unavailable(reason: str) -> NoReturn:
    """Skip the test because a peer cannot run here; in CI, fail it instead."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Show the log of every peer a failed test used (objects with ``LOG_TITLE``)."""
    report = yield
    if report.when == "call" and report.failed:
        for value in getattr(item, "funcargs", {}).values():
            title = getattr(value, "LOG_TITLE", None)
            if isinstance(title, str):
                report.sections.append((title, value.log()))
    return report


@pytest.fixture(scope="module")
def postfix_receiver() -> Iterator[postfix_peer.Postfix]:
    """A throw-away Postfix smtpd that accepts and discards all mail (CHUNKING on).

    Its ``message_size_limit`` is the BDAT dialogs' ``SIZE_LIMIT``.
    """
    reason = postfix_peer.unavailable()
    if reason is not None:
        peer_unavailable(reason)
    instance = postfix_peer.Postfix(postfix_peer.receiving(message_size_limit=SIZE_LIMIT))
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()
