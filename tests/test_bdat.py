"""CHUNKING and BINARYMIME (RFC 3030) over real sockets: raw clients and smtplib's low level.

``BDAT <n> [LAST]`` is followed by exactly n octets; every BDAT gets one reply,
after its octets, in order when pipelined. These tests drive a real server on
127.0.0.1 and look at what the handler received.
"""

from __future__ import annotations

import smtplib
import time
from typing import Any

import pytest
from conftest import HOST, LOOP_KINDS, RawClient, Recorder

from smtpkit.config import ServerConfig
from smtpkit.lmtp import LMTP
from smtpkit.smtp import SMTP, Envelope, Session

pytestmark = pytest.mark.parametrize("loop_kind", LOOP_KINDS)

ENVELOPE = b"EHLO client.test\r\nMAIL FROM:<anne@example.com>\r\nRCPT TO:<bart@example.com>\r\n"
BODY = b"Subject: chunks\r\n\r\nHello.\r\n"


def bdat(data: bytes, *, last: bool = False) -> bytes:
    """A BDAT command with its chunk."""
    return b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data


def codes(client: RawClient, count: int) -> list[int]:
    """The codes of the next ``count`` replies."""
    return [int(reply[-1][:3]) for reply in client.replies(count)]


def opened(raw: Any, port: int) -> RawClient:
    """A raw client that has greeted with EHLO and started a transaction."""
    client: RawClient = raw(port)
    client.send(ENVELOPE)
    assert codes(client, 3) == [250, 250, 250]
    return client


def ehlo_keywords(raw: Any, port: int) -> list[str]:
    client = raw(port)
    client.send(b"EHLO client.test\r\n")
    return [line[4:].split(" ")[0] for line in client.reply()[1:]]


# ----------------------------------------------------------------------
# Offering the extension


def test_the_bare_class_does_not_offer_chunking(server: Any, raw: Any) -> None:
    port = server().port
    assert "CHUNKING" not in ehlo_keywords(raw, port)
    client = opened(raw, port)
    client.send(b"BDAT 6 LAST\r\n")
    assert client.line() == '500 Error: command "BDAT" not recognized'


def test_chunking_keyword_offers_chunking_and_binarymime(server: Any, raw: Any) -> None:
    keywords = ehlo_keywords(raw, server(chunking=True).port)
    assert keywords[-3:] == ["CHUNKING", "BINARYMIME", "HELP"]


def test_server_config_offers_chunking(server: Any, raw: Any) -> None:
    running = server(config=ServerConfig(enhanced_status_codes=False))
    assert {"CHUNKING", "BINARYMIME"} <= set(ehlo_keywords(raw, running.port))


def test_chunking_must_be_a_bool(server: Any) -> None:
    with pytest.raises(TypeError, match=r"chunking = 'yes': expected True or False"):
        SMTP(Recorder(), chunking="yes")


def test_help_lists_bdat(server: Any, raw: Any) -> None:
    client = raw(server(chunking=True).port)
    assert "BDAT" in client.command("HELP").split()
    assert client.command("HELP BDAT") == "250 Syntax: BDAT <size> [LAST]"


# ----------------------------------------------------------------------
# Chunks make the message


def test_chunks_make_the_message_with_smtplib(server: Any) -> None:
    running = server(chunking=True)
    with smtplib.SMTP(HOST, running.port) as client:
        client.ehlo("client.test")
        assert client.has_extn("chunking")
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        client.putcmd("BDAT", str(len(BODY[:10])))
        client.send(BODY[:10])
        assert client.getreply() == (250, b"10 octets received")
        client.putcmd("BDAT", f"{len(BODY[10:])} LAST")
        client.send(BODY[10:])
        assert client.getreply() == (250, b"OK")
    (envelope,) = running.handler.envelopes
    assert envelope.content == BODY
    assert envelope.original_content == BODY


def test_chunk_octets_are_not_lines(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    # No dot-unstuffing, no end marker, NUL, bare CR and LF, an over-long line.
    body = b"..a\r\n.\r\nQUIT\r\n\x00\r\n\n\r" + b"x" * 5000 + b"\r\n"
    client.send(bdat(body, last=True))
    assert codes(client, 1) == [250]
    assert client.command("NOOP") == "250 OK"
    assert running.handler.envelopes[0].content == body


def test_everything_pipelined_in_one_write(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = raw(running.port)
    messages = [b"first\r\n", b"second\r\n"]
    stream = b"EHLO client.test\r\n"
    for message in messages:
        stream += b"MAIL FROM:<anne@example.com>\r\nRCPT TO:<bart@example.com>\r\n"
        stream += bdat(message[:3]) + bdat(message[3:]) + b"BDAT 0 LAST\r\n"
    client.send(stream + b"QUIT\r\n")
    replies = [reply[-1] for reply in client.replies(1 + 5 * len(messages) + 1)]
    assert replies[1:6] == [
        "250 OK",
        "250 OK",
        "250 3 octets received",
        f"250 {len(messages[0]) - 3} octets received",
        "250 OK",
    ]
    assert replies[-1] == "221 Bye"
    assert [e.content for e in running.handler.envelopes] == messages


def test_a_chunk_split_over_many_writes(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    for byte in bdat(BODY, last=True):
        client.send(bytes([byte]))
    assert codes(client, 1) == [250]
    assert running.handler.envelopes[0].content == BODY


def test_bdat_zero_last_alone_is_an_empty_message(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    assert client.command("BDAT 0 LAST") == "250 OK"
    assert running.handler.envelopes[0].content == b""


def test_a_new_transaction_after_last(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    client.send(bdat(b"one", last=True) + bdat(b"late", last=True))
    assert [r[-1] for r in client.replies(2)] == ["250 OK", "503 Error: need MAIL command"]
    assert [e.content for e in running.handler.envelopes] == [b"one"]


# ----------------------------------------------------------------------
# Refused BDATs: the octets are still the chunk


def test_bdat_before_mail_reads_and_drops_its_octets(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = raw(running.port)
    client.send(b"EHLO client.test\r\n" + bdat(b"RSET\r\n", last=True) + b"NOOP\r\n")
    replies = [r[-1] for r in client.replies(3)]
    assert replies[1:] == ["503 Error: need MAIL command", "250 OK"]
    assert running.handler.envelopes == []


def test_bdat_before_ehlo(server: Any, raw: Any) -> None:
    client = raw(server(chunking=True).port)
    client.send(bdat(b"NOOP\r\n") + b"NOOP\r\n")
    assert [r[-1] for r in client.replies(2)] == ["503 Error: send EHLO first", "250 OK"]


def test_bdat_without_recipients(server: Any, raw: Any) -> None:
    client = raw(server(chunking=True).port)
    client.send(b"EHLO c\r\nMAIL FROM:<a@example.com>\r\n" + bdat(b"NOOP\r\n", last=True))
    replies = [r[-1] for r in client.replies(3)]
    assert replies[2] == "554 5.5.1 Error: no valid recipients"
    assert client.command("NOOP") == "250 OK"


def test_data_after_bdat_is_refused_until_rset(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    client.send(bdat(b"part"))
    assert codes(client, 1) == [250]
    assert client.command("DATA") == "503 5.5.1 Error: DATA after BDAT in one transaction"
    assert client.command("RSET") == "250 OK"
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
    assert codes(client, 3) == [250, 250, 354]
    assert client.command("whole\r\n.") == "250 OK"
    assert [e.content for e in running.handler.envelopes] == [b"whole\r\n"]


def test_bad_size_closes_the_connection(server: Any, raw: Any) -> None:
    client = opened(raw, server(chunking=True).port)
    client.send(b"BDAT ten LAST\r\nNOOP\r\n")
    assert client.line() == "521 5.5.4 Syntax: BDAT <size> [LAST]; closing the connection"
    assert client.closed()


def test_unknown_end_marker_reads_the_chunk(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = opened(raw, running.port)
    client.send(b"BDAT 6 FINAL\r\nNOOP\r\nNOOP\r\n")
    assert [r[-1] for r in client.replies(2)] == ["501 5.5.4 Syntax: BDAT <size> [LAST]", "250 OK"]
    # The transaction is still open: a good BDAT completes it.
    client.send(bdat(b"ok", last=True))
    assert codes(client, 1) == [250]
    assert running.handler.envelopes[0].content == b"ok"


# ----------------------------------------------------------------------
# Limits


def test_size_limit_counts_every_chunk(server: Any, raw: Any) -> None:
    running = server(chunking=True, data_size_limit=100)
    client = opened(raw, running.port)
    client.send(bdat(b"a" * 60) + bdat(b"b" * 60) + bdat(b"c", last=True) + b"NOOP\r\n")
    replies = [r[-1] for r in client.replies(4)]
    assert replies == [
        "250 60 octets received",
        "552 Error: Too much mail data",
        "554 5.5.0 Error: chunk discarded after an earlier error; send RSET",
        "250 OK",
    ]
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n" + bdat(b"d", last=True))
    assert codes(client, 3) == [250, 250, 250]
    assert [e.content for e in running.handler.envelopes] == [b"d"]


def test_an_announced_chunk_past_the_limit_is_not_buffered(server: Any, raw: Any) -> None:
    running = server(chunking=True, data_size_limit=1000)
    client = opened(raw, running.port)
    client.send(b"BDAT 10000000000 LAST\r\n" + b"x" * 1_000_000)

    async def held() -> tuple[int, int] | None:
        protocol = running.protocols[0]
        transfer = protocol._transfer
        if transfer is None or transfer.size < 1_000_000:
            return None
        return transfer.pending, len(protocol._buf)

    deadline = time.monotonic() + 10
    while (found := running.call(held())) is None:
        assert time.monotonic() < deadline, "the server did not read the octets"
        time.sleep(0.02)
    assert found == (0, 0)


def test_the_rest_of_an_oversized_chunk_is_read(server: Any, raw: Any) -> None:
    client = opened(raw, server(chunking=True, data_size_limit=1000).port)
    client.send(bdat(b"NOOP\r\n" * 1000, last=True) + b"NOOP\r\n")
    assert [r[-1] for r in client.replies(2)] == ["552 Error: Too much mail data", "250 OK"]


def test_idle_timeout_inside_a_chunk(server: Any, raw: Any) -> None:
    client = opened(raw, server(chunking=True, timeout=1, data_min_rate=0).port)
    client.send(b"BDAT 100 LAST\r\nonly a few")
    client.sock.settimeout(10)
    assert client.line() == "421 4.4.2 smtp.example.test Error: timeout exceeded"


def test_minimum_rate_applies_to_chunks(server: Any, raw: Any) -> None:
    running = server(chunking=True, data_min_rate=10_000, data_rate_window=0.5)
    client = opened(raw, running.port)
    client.send(b"BDAT 100000 LAST\r\n")
    client.sock.settimeout(0.2)
    line = b""
    deadline = time.monotonic() + 10
    while b"\r\n" not in line and time.monotonic() < deadline:
        try:
            client.sock.sendall(b"x")
            line += client.sock.recv(100)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    assert line.startswith(b"421 4.4.2 smtp.example.test Error: data transfer too slow"), line


# ----------------------------------------------------------------------
# Hooks: streaming, errors, LMTP


class Streamer(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[bytes] = []
        self.aborted: list[str] = []

    async def handle_DATA_CHUNK(
        self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        if b"boom" in chunk:
            raise RuntimeError("boom")
        self.pieces.append(chunk)

    async def handle_DATA_ABORT(
        self, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        self.aborted.append(reason)


def test_streaming_hook_sees_every_chunk(server: Any, raw: Any) -> None:
    handler = Streamer()
    client = opened(raw, server(handler, chunking=True).port)
    big = b"y" * 300_000
    client.send(bdat(b"head\r\n") + bdat(big) + bdat(b"tail\r\n", last=True))
    assert codes(client, 3) == [250, 250, 250]
    assert b"".join(handler.pieces) == b"head\r\n" + big + b"tail\r\n"
    assert handler.envelopes[0].content is None


def test_a_failing_streaming_hook_fails_the_transaction(server: Any, raw: Any) -> None:
    handler = Streamer()
    client = opened(raw, server(handler, chunking=True).port)
    client.send(bdat(b"boom") + bdat(b"more", last=True) + b"NOOP\r\n")
    replies = [r[-1] for r in client.replies(3)]
    assert replies[0].startswith("451 ")
    assert replies[1].startswith("554 ")
    assert replies[2] == "250 OK"
    assert handler.aborted == ["the handler failed"]
    assert handler.envelopes == []


def test_size_limit_tells_the_streaming_hook(server: Any, raw: Any) -> None:
    handler = Streamer()
    client = opened(raw, server(handler, chunking=True, data_size_limit=10).port)
    client.send(bdat(b"12345") + bdat(b"678901", last=True))
    assert codes(client, 2) == [250, 552]
    assert handler.pieces == [b"12345"]
    assert handler.aborted == ["552 Error: Too much mail data"]


class AbortRecorder(Streamer):
    """A streaming handler that also notes which envelope each abort was for."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted_envelopes: list[Envelope] = []

    async def handle_DATA_CHUNK(
        self, server: SMTP, session: Session, envelope: Envelope, chunk: bytes
    ) -> None:
        self.chunk_envelope = envelope
        await super().handle_DATA_CHUNK(server, session, envelope, chunk)

    async def handle_DATA_ABORT(
        self, server: SMTP, session: Session, envelope: Envelope, reason: str
    ) -> None:
        self.aborted_envelopes.append(envelope)
        await super().handle_DATA_ABORT(server, session, envelope, reason)


def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_client_leaving_between_chunks_tells_the_streaming_hook(server: Any, raw: Any) -> None:
    handler = AbortRecorder()
    client = opened(raw, server(handler, chunking=True).port)
    client.send(bdat(b"first part"))
    assert codes(client, 1) == [250]
    client.close()
    wait_for(lambda: handler.aborted)
    assert handler.aborted == ["connection lost"]
    assert handler.aborted_envelopes == [handler.chunk_envelope]
    assert handler.envelopes == []


@pytest.mark.parametrize("reset", [b"RSET\r\n", b"EHLO again.test\r\n"])
def test_a_reset_between_chunks_tells_the_streaming_hook(
    server: Any, raw: Any, reset: bytes
) -> None:
    handler = AbortRecorder()
    client = opened(raw, server(handler, chunking=True).port)
    client.send(bdat(b"first part"))
    assert codes(client, 1) == [250]
    client.send(reset)
    assert client.replies(1)[0][-1].startswith("250")
    wait_for(lambda: handler.aborted)
    assert handler.aborted == ["transaction reset"]
    assert handler.aborted_envelopes == [handler.chunk_envelope]
    # The session goes on with a new transaction, whose message arrives whole.
    client.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n" + bdat(b"x", last=True))
    assert codes(client, 3) == [250, 250, 250]
    assert handler.aborted == ["transaction reset"]
    assert len(handler.envelopes) == 1


def test_a_finished_or_failed_message_is_not_aborted_again(server: Any, raw: Any) -> None:
    handler = AbortRecorder()
    client = opened(raw, server(handler, chunking=True).port)
    client.send(bdat(b"boom") + bdat(b"more", last=True) + b"RSET\r\n")
    assert codes(client, 3)[2] == 250
    client.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\n"
        + bdat(b"whole", last=True)
        + b"RSET\r\nQUIT\r\n"
    )
    assert codes(client, 5) == [250, 250, 250, 250, 221]
    time.sleep(0.2)  # an abort, if one were wrongly scheduled, runs by then
    assert handler.aborted == ["the handler failed"]


class PerRecipient(Recorder):
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> Any:
        await super().handle_DATA(server, session, envelope)
        return [f"250 2.0.0 {address} stored" for address in envelope.rcpt_tos]


def test_lmtp_replies_per_recipient_after_last(server: Any, raw: Any) -> None:
    running = server(PerRecipient(), cls=LMTP, chunking=True)
    client = raw(running.port)
    client.send(
        b"LHLO client.test\r\nMAIL FROM:<a@example.com>\r\n"
        b"RCPT TO:<b@example.com>\r\nRCPT TO:<c@example.com>\r\n"
        + bdat(b"part one, ")
        + bdat(b"part two", last=True)
    )
    replies = [r[-1] for r in client.replies(7)]
    assert replies[4:] == [
        "250 10 octets received",
        "250 2.0.0 b@example.com stored",
        "250 2.0.0 c@example.com stored",
    ]
    assert running.handler.envelopes[0].content == b"part one, part two"


# ----------------------------------------------------------------------
# BINARYMIME


BINARY = bytes(range(256)) * 4


def test_binarymime_arrives_as_bytes_even_with_decode_data(server: Any, raw: Any) -> None:
    running = server(chunking=True, decode_data=True)
    client = raw(running.port)
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
    )
    assert codes(client, 3) == [250, 250, 250]
    client.send(bdat(BINARY, last=True))
    assert codes(client, 1) == [250]
    (envelope,) = running.handler.envelopes
    assert envelope.body_type == "BINARYMIME"
    assert "BODY=BINARYMIME" in envelope.mail_options
    assert envelope.content == BINARY
    assert envelope.original_content == BINARY


def test_binarymime_must_come_by_bdat(server: Any, raw: Any) -> None:
    client = raw(server(chunking=True).port)
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
    )
    assert codes(client, 3) == [250, 250, 250]
    assert client.command("DATA") == "503 5.5.1 Error: BODY=BINARYMIME requires BDAT"


def test_body_type_of_a_text_message(server: Any, raw: Any) -> None:
    running = server(chunking=True)
    client = raw(running.port)
    client.send(b"EHLO c\r\nMAIL FROM:<a@example.com> BODY=8BITMIME\r\nRCPT TO:<b@example.com>\r\n")
    client.send(bdat(b"caf\xc3\xa9\r\n", last=True))
    assert codes(client, 4) == [250, 250, 250, 250]
    assert running.handler.envelopes[0].body_type == "8BITMIME"


def test_binarymime_refused_without_chunking(server: Any, raw: Any) -> None:
    client = raw(server().port)
    client.send(b"EHLO c\r\n")
    client.reply()
    reply = client.command("MAIL FROM:<a@example.com> BODY=BINARYMIME")
    assert reply == "501 Error: BODY can only be one of 7BIT, 8BITMIME"


# ----------------------------------------------------------------------
# The Proxy handler relays binary messages by BDAT, or not at all


def relay_binary(server: Any, raw: Any, **upstream: Any) -> tuple[str, Recorder]:
    """Send a BINARYMIME message through a Proxy to an smtpkit upstream; the reply and upstream."""
    from smtpkit.handlers import Proxy

    target = server(**upstream)
    front = server(Proxy(HOST, target.port, timeout=10), chunking=True)
    client = raw(front.port)
    client.send(
        b"EHLO c\r\nMAIL FROM:<a@example.com> BODY=BINARYMIME\r\nRCPT TO:<b@example.com>\r\n"
    )
    assert codes(client, 3) == [250, 250, 250]
    client.send(bdat(b"Subject: binary\r\n\r\n" + BINARY, last=True))
    return client.reply()[-1], target.handler


def test_proxy_relays_binary_by_bdat(server: Any, raw: Any) -> None:
    reply, upstream = relay_binary(server, raw, chunking=True)
    assert reply == "250 OK"
    (envelope,) = upstream.envelopes
    assert envelope.body_type == "BINARYMIME"
    head, _, body = envelope.content.partition(b"\r\n\r\n")
    assert body == BINARY
    assert b"Subject: binary\r\nX-Peer: 127.0.0.1:" in head


def test_proxy_refuses_binary_for_an_upstream_without_binarymime(server: Any, raw: Any) -> None:
    reply, upstream = relay_binary(server, raw)
    assert reply == "554 5.6.3 The relay host cannot take a binary (BINARYMIME) message"
    assert upstream.envelopes == []


def test_bdat_refused_before_starttls_still_reads_its_octets(server: Any, raw: Any) -> None:
    from interop import certificates

    running = server(
        chunking=True, tls_context=certificates().server_context(), require_starttls=True
    )
    client = raw(running.port)
    client.send(b"EHLO c\r\n")
    client.reply()
    client.send(bdat(b"QUIT\r\n", last=True) + b"NOOP\r\n")
    assert [r[-1] for r in client.replies(2)] == [
        "530 Must issue a STARTTLS command first",
        "250 OK",
    ]


def test_an_app_route_gets_a_message_sent_by_bdat(server: Any) -> None:
    from smtpkit import App
    from smtpkit.routing import RoutedMessage

    app = App()
    kept: list[RoutedMessage] = []

    @app.route("(user)@example.com")
    async def inbox(message: RoutedMessage) -> None:
        kept.append(message)

    running = server(factory=app.protocol_factory(ServerConfig(hostname="mx.example.test")))
    with smtplib.SMTP(HOST, running.port) as client:
        client.ehlo("client.test")
        assert client.has_extn("chunking")
        client.mail("anne@example.com")
        client.rcpt("bart@example.com")
        client.putcmd("BDAT", f"{len(BODY)} LAST")
        client.send(BODY)
        assert client.getreply() == (250, b"2.0.0 OK")
    (message,) = kept
    assert message.content.endswith(BODY)
