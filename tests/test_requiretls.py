"""REQUIRETLS (RFC 8689): offered inside TLS only, on the envelope, and the Proxy's rule."""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator

import pytest
import trustme
from conftest import HOST, RawClient, Recorder, ServerFactory

from smtpkit.config import ServerConfig
from smtpkit.handlers import Proxy
from smtpkit.smtp import SMTP

MESSAGE = "Subject: secret\r\n\r\nfor TLS only\r\n"


@pytest.fixture(scope="module")
def certs() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """A server context for 127.0.0.1 and a client context that trusts it."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(HOST).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    yield server_context, client_context


def _client(port: int, context: ssl.SSLContext | None) -> smtplib.SMTP:
    client = smtplib.SMTP(HOST, port, timeout=10)
    client.ehlo("client.example")
    if context is not None:
        client.starttls(context=context)
        client.ehlo("client.example")
    return client


def test_offered_only_inside_tls(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certs
    running = server(Recorder(), tls_context=server_context, requiretls=True)
    client = smtplib.SMTP(HOST, running.port, timeout=10)
    client.ehlo("client.example")
    assert client.has_extn("starttls") and not client.has_extn("requiretls")
    client.starttls(context=client_context)
    client.ehlo("client.example")
    assert client.has_extn("requiretls")
    client.quit()


def test_off_on_the_bare_class_and_on_in_server_config(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certs
    bare = server(Recorder(), tls_context=server_context)
    with _client(bare.port, client_context) as client:
        assert not client.has_extn("requiretls")
        code, text = client.mail("a@example.com", ["REQUIRETLS"])
        assert (code, text) == (555, b"MAIL FROM parameters not recognized or not implemented")
    assert SMTP(Recorder(), config=ServerConfig()).requiretls is True
    assert SMTP(Recorder()).requiretls is False
    with pytest.raises(TypeError, match="requiretls = 'yes': expected True or False"):
        SMTP(Recorder(), requiretls="yes")


def test_the_parameter_is_refused_outside_tls(
    server: ServerFactory, raw: Callable[..., RawClient]
) -> None:
    recorder = Recorder()
    running = server(recorder, requiretls=True, enhanced_status_codes=True)
    client = raw(running.port)
    client.send("EHLO client.example\r\n")
    assert "250-REQUIRETLS" not in client.reply()
    reply = client.command("MAIL FROM:<a@example.com> REQUIRETLS")
    assert reply == "530 5.7.10 REQUIRETLS needs a TLS session"
    assert client.command("MAIL FROM:<a@example.com>") == "250 2.0.0 OK"


def test_inside_tls_the_envelope_says_so(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certs
    recorder = Recorder()
    running = server(recorder, tls_context=server_context, requiretls=True)
    with _client(running.port, client_context) as client:
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE, mail_options=["REQUIRETLS"])
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    first, second = recorder.envelopes
    assert first.require_tls is True and "REQUIRETLS" in first.mail_options
    assert second.require_tls is False


def test_a_parameter_with_a_value_is_refused(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certs
    running = server(Recorder(), tls_context=server_context, requiretls=True)
    with _client(running.port, client_context) as client:
        code, _ = client.mail("a@example.com", ["REQUIRETLS=YES"])
        assert code == 555


# -- the Proxy handler ---------------------------------------------------------------


def _relay(
    server: ServerFactory,
    certs: tuple[ssl.SSLContext, ssl.SSLContext],
    upstream_port: int,
    *,
    require_tls: bool,
) -> tuple[int, bytes]:
    """Send one message through a Proxy server; return the reply to its end of data."""
    server_context, client_context = certs
    proxy = Proxy(HOST, upstream_port, timeout=10, tls_context=client_context)
    front = server(proxy, tls_context=server_context, requiretls=True)
    with _client(front.port, client_context) as client:
        options = ["REQUIRETLS"] if require_tls else []
        assert client.mail("a@example.com", options)[0] == 250
        assert client.rcpt("b@example.com")[0] == 250
        return client.data(MESSAGE)


def test_proxy_relays_over_tls_to_an_upstream_with_requiretls(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    upstream = Recorder()
    running = server(upstream, tls_context=certs[0], requiretls=True)
    assert _relay(server, certs, running.port, require_tls=True)[0] == 250
    [envelope] = upstream.envelopes
    [session] = upstream.sessions
    assert envelope.require_tls is True
    assert session.ssl is not None


@pytest.mark.parametrize(
    "upstream_kwargs",
    [{}, {"requiretls": True}, {"tls": True}],
    ids=["plain", "requiretls-without-tls", "tls-without-requiretls"],
)
def test_proxy_refuses_an_upstream_without_starttls_and_requiretls(
    server: ServerFactory,
    certs: tuple[ssl.SSLContext, ssl.SSLContext],
    upstream_kwargs: dict[str, bool],
) -> None:
    upstream = Recorder()
    kwargs: dict[str, object] = {"requiretls": upstream_kwargs.get("requiretls", False)}
    if upstream_kwargs.get("tls"):
        kwargs["tls_context"] = certs[0]
    running = server(upstream, **kwargs)
    code, text = _relay(server, certs, running.port, require_tls=True)
    assert (code, text) == (
        550,
        b"5.7.30 REQUIRETLS support required: the relay host does not offer it",
    )
    assert upstream.envelopes == []


def test_proxy_relays_other_messages_as_before(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    upstream = Recorder()
    running = server(upstream)
    assert _relay(server, certs, running.port, require_tls=False)[0] == 250
    [envelope] = upstream.envelopes
    assert envelope.require_tls is False
    assert upstream.sessions[0].ssl is None


def test_a_refused_mail_leaves_no_requirement_behind(
    server: ServerFactory, certs: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_context, client_context = certs
    recorder = Recorder()
    running = server(recorder, tls_context=server_context, requiretls=True, data_size_limit=1000)
    with _client(running.port, client_context) as client:
        code, _ = client.mail("a@example.com", ["REQUIRETLS", "SIZE=5000"])
        assert code == 552
        client.sendmail("a@example.com", ["b@example.com"], MESSAGE)
    [envelope] = recorder.envelopes
    assert envelope.require_tls is False
