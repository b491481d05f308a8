"""nginx's mail proxy in front of smtpkit, and the XCLIENT it sends when ``xclient on``.

nginx (``tests/interop/nginx.py``) asks a tiny ``auth_http`` responder where
each session goes and proxies it there. With ``xclient off`` a message sent
through nginx must reach smtpkit with its envelope. With ``xclient on`` nginx
tells the upstream who the real client is; the raw recorder (which offers
XCLIENT) keeps what nginx sends, the reference for smtpkit's XCLIENT.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from . import HOST, Recorder, serving, wait_for
from . import nginx as nginx_peer
from .conftest import peer_unavailable
from .nginx import AuthResponder, Nginx
from .recorder import RecorderServer

pytestmark = pytest.mark.interop

MESSAGE = b"From: sender@client.test\r\nTo: rcpt@dest.test\r\nSubject: via nginx\r\n\r\nHello.\r\n"
#: The XCLIENT line nginx 1.22 sends for a client on 127.0.0.1 (no resolver, no login).
NGINX_XCLIENT = f"XCLIENT ADDR={HOST} NAME=[UNAVAILABLE]"
#: A second loopback address for the client, so that it differs from nginx's.
CLIENT = "127.0.0.2"


class Proxies(list[Nginx]):
    """The nginx instances a test started; their logs are shown when it fails."""

    LOG_TITLE = "nginx error log"

    def log(self) -> str:
        return "".join(proxy.log() for proxy in self)


@pytest.fixture
def proxies() -> Iterator[Proxies]:
    reason = nginx_peer.unavailable()
    if reason is not None:
        peer_unavailable(reason)
    started = Proxies()
    yield started
    for proxy in started:
        proxy.stop()


@contextmanager
def nginx_in_front_of(port: int, proxies: Proxies, *, xclient: bool) -> Iterator[AuthResponder]:
    """An auth responder pointing at ``port`` and nginx using it (appended to ``proxies``)."""
    with AuthResponder(port) as auth:
        proxy = Nginx(auth.port, xclient=xclient)
        proxies.append(proxy)
        proxy.start()
        yield auth


def send_through(proxy: Nginx) -> None:
    with smtplib.SMTP(HOST, proxy.port, timeout=10) as client:
        client.ehlo("client.example")
        refused = client.sendmail("sender@client.test", ["rcpt@dest.test"], MESSAGE)
    assert refused == {}


def test_message_through_nginx_reaches_smtpkit(proxies: Proxies) -> None:
    recorder = Recorder()
    with (
        serving(recorder) as server,
        nginx_in_front_of(server.port, proxies, xclient=False) as auth,
    ):
        send_through(proxies[0])
        wait_for(lambda: bool(recorder.messages), "the message in smtpkit")
    session, envelope = recorder.messages[0]
    assert envelope.mail_from == "sender@client.test"
    assert envelope.rcpt_tos == ["rcpt@dest.test"]
    assert envelope.original_content == MESSAGE
    # Without XCLIENT smtpkit sees nginx: its own EHLO name, not the client's.
    assert session.host_name == "nginx.test"
    (request,) = auth.requests
    assert request["auth-method"] == "none"
    assert request["auth-smtp-helo"] == "client.example"
    assert request["client-ip"] == HOST


def test_nginx_sends_xclient_before_the_clients_ehlo(proxies: Proxies) -> None:
    keywords = ("PIPELINING", "8BITMIME", "XCLIENT NAME ADDR PORT PROTO HELO LOGIN")
    with (
        RecorderServer(keywords) as recorder,
        nginx_in_front_of(recorder.port, proxies, xclient=True),
    ):
        send_through(proxies[0])
        record = recorder.wait_message()
    assert record.commands[:3] == ["EHLO nginx.test", NGINX_XCLIENT, "EHLO client.example"]
    assert record.verbs[3:6] == ["MAIL", "RCPT", "DATA"]
    assert record.messages == [MESSAGE]


def test_nginx_xclient_gives_smtpkit_the_clients_address(proxies: Proxies) -> None:
    # The client connects from 127.0.0.2, nginx from 127.0.0.1: only nginx is trusted.
    recorder = Recorder()
    with (
        serving(recorder, xclient_trusted_networks=[f"{HOST}/32"]) as server,
        nginx_in_front_of(server.port, proxies, xclient=True),
        smtplib.SMTP(HOST, proxies[0].port, timeout=10, source_address=(CLIENT, 0)) as client,
    ):
        client.ehlo("client.example")
        assert client.sendmail("sender@client.test", ["rcpt@dest.test"], MESSAGE) == {}
        wait_for(lambda: bool(recorder.messages), "the message in smtpkit")
    session, envelope = recorder.messages[0]
    assert session.peer[0] == CLIENT
    assert session.connected_peer[0] == HOST
    assert str(session.xclient.addr) == CLIENT
    # nginx greets again with the client's own EHLO name after XCLIENT.
    assert session.host_name == "client.example"
    assert envelope.original_content == MESSAGE


def test_nginx_xclient_from_an_untrusted_proxy_is_refused(proxies: Proxies) -> None:
    # nginx sends XCLIENT whatever the EHLO reply says; smtpkit refuses it
    # (550 5.7.0) and nginx passes the refusal on: nothing is delivered.
    recorder = Recorder()
    with (
        serving(recorder, xclient_trusted_networks=["192.0.2.0/24"]) as server,
        nginx_in_front_of(server.port, proxies, xclient=True),
        smtplib.SMTP(HOST, proxies[0].port, timeout=10, source_address=(CLIENT, 0)) as client,
    ):
        client.ehlo("client.example")
        with pytest.raises(smtplib.SMTPException) as refused:
            client.sendmail("sender@client.test", ["rcpt@dest.test"], MESSAGE)
    assert "5.7.0 Error: insufficient authorization" in str(refused.value)
    assert recorder.messages == []
