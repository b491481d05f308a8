"""The fixtures in anyio and pytest-asyncio tests, with aiosmtplib as the client."""

from __future__ import annotations

import asyncio
import smtplib

import pytest

from smtpkit.testing import SMTPTestServer

from .conftest import RunInner

# Shared by both async flavours: {mark} is the marker that makes a test async.
ASYNC_TESTS = """
import asyncio
from email.message import EmailMessage

import aiosmtplib
import pytest
from smtpkit.testing import MessageWaitTimeout

@pytest.fixture
def anyio_backend():
    return "asyncio"  # aiosmtplib runs on asyncio

def message(subject):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "a@x.org", "b@x.org", subject
    msg.set_content("hello")
    return msg

@{mark}
async def test_wait_for_lets_the_loop_run(smtp_server):
    sending = asyncio.ensure_future(
        aiosmtplib.send(message("async"), hostname=smtp_server.host, port=smtp_server.port))
    [msg] = await smtp_server.wait_for(1, timeout=30)
    await sending
    assert msg["Subject"] == "async" and msg.rcpt_tos == ["b@x.org"]

@{mark}
async def test_wait_for_timeout_does_not_block(smtp_server):
    ticks = 0

    async def tick():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.ensure_future(tick())
    with pytest.raises(MessageWaitTimeout, match="waited 0.3s for 1 message"):
        await smtp_server.wait_for(1, timeout=0.3)
    ticker.cancel()
    assert ticks >= 3

@{mark}
@pytest.mark.smtp_server(tls="starttls", auth={{"ann": "secret"}})
async def test_starttls_and_auth(smtp_server):
    await aiosmtplib.send(
        message("secure"), hostname=smtp_server.host, port=smtp_server.port,
        start_tls=True, tls_context=smtp_server.client_tls_context,
        username="ann", password="secret")
    [msg] = await smtp_server.wait_for(1)
    assert (msg.tls, msg.auth_login) == (True, "ann")

@{mark}
@pytest.mark.smtp_server(tls="implicit")
async def test_implicit_tls(smtp_server):
    await aiosmtplib.send(
        message("smtps"), hostname=smtp_server.host, port=smtp_server.port,
        use_tls=True, tls_context=smtp_server.client_tls_context)
    assert (await smtp_server.wait_for(1))[0].tls is True

@{mark}
async def test_client_error_path(smtp_server):
    smtp_server.faults.reply("DATA", "452 4.3.1 Insufficient storage", nth=1)
    with pytest.raises(aiosmtplib.SMTPDataError) as caught:
        await aiosmtplib.send(message("one"), hostname=smtp_server.host, port=smtp_server.port)
    assert caught.value.code == 452
    await aiosmtplib.send(message("two"), hostname=smtp_server.host, port=smtp_server.port)
    assert [m["Subject"] for m in await smtp_server.wait_for(1)] == ["two"]
"""


def test_anyio_tests(run_inner: RunInner) -> None:
    run_inner(ASYNC_TESTS.format(mark="pytest.mark.anyio"), passed=5)


def test_pytest_asyncio_tests(run_inner: RunInner) -> None:
    run_inner(ASYNC_TESTS.format(mark="pytest.mark.asyncio"), passed=5)


def test_sync_and_async_tests_in_one_module(run_inner: RunInner) -> None:
    run_inner(
        """
        import asyncio, pytest
        import aiosmtplib, anyio.to_thread
        from helpers import send

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["trio"])
        async def test_on_trio(smtp_server, anyio_backend):
            pytest.importorskip("trio")
            await anyio.to_thread.run_sync(send, smtp_server, "trio")
            [msg] = await smtp_server.wait_for(1, timeout=30)
            assert msg["Subject"] == "trio"

        def test_sync(smtp_server):
            send(smtp_server, "sync")
            assert smtp_server.wait(1)[0]["Subject"] == "sync"

        @pytest.mark.anyio
        @pytest.mark.parametrize("anyio_backend", ["asyncio"])
        async def test_async_waits_for_a_sync_sender(smtp_server, anyio_backend):
            sender = asyncio.get_running_loop().run_in_executor(None, send, smtp_server, "thread")
            [msg] = await smtp_server.wait_for(1, timeout=30)
            await sender
            assert msg["Subject"] == "thread"

        def test_asyncio_run_in_a_sync_test(smtp_server):
            async def main():
                await aiosmtplib.send("Subject: run\\r\\n\\r\\nx", sender="a@x.org",
                                      recipients=["b@x.org"], hostname=smtp_server.host,
                                      port=smtp_server.port)
                return await smtp_server.wait_for(1)
            assert asyncio.run(main())[0]["Subject"] == "run"
        """,
        passed=4,
    )


def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    async def give_up(server: SMTPTestServer) -> None:
        waiting = asyncio.ensure_future(server.wait_for(1, timeout=30))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    with SMTPTestServer() as server:
        asyncio.run(give_up(server))  # that loop is closed now
        with smtplib.SMTP(server.host, server.port) as client:
            client.ehlo()
            client.mail("a@x.org")
            client.rcpt("b@x.org")
            assert client.data(b"Subject: after\r\n\r\nx") == (250, b"OK: message captured")
        assert server.wait(1)[0]["Subject"] == "after"
