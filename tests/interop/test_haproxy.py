"""smtpkit behind a real HAProxy sending PROXY protocol v1 and v2 headers.

HAProxy (``/usr/sbin/haproxy``, Debian package ``haproxy``) listens on a
frontend of its own and relays each connection to smtpkit on 127.0.0.1 with
``send-proxy`` or ``send-proxy-v2``. The handler's ``handle_PROXY`` hook must
see the address of the client that connected to HAProxy, and the port of the
frontend it connected to.

Without haproxy the tests are skipped, unless the ``CI`` environment variable
is set: there a missing program is a failure.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import smtplib
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import HOST, Recorder

from smtpkit.proxy_protocol import AF, PROTO, V2_CMD, ProxyData
from smtpkit.smtp import SMTP, Envelope, Session

HAPROXY = shutil.which("haproxy") or (
    "/usr/sbin/haproxy" if os.access("/usr/sbin/haproxy", os.X_OK) else None
)

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        HAPROXY is None and not os.environ.get("CI"),
        reason="haproxy is not installed (apt-get install haproxy)",
    ),
]


class ProxyRecorder(Recorder):
    """Accepts every header and keeps it."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[ProxyData] = []

    async def handle_PROXY(
        self, server: SMTP, session: Session, envelope: Envelope, proxy_data: ProxyData
    ) -> bool:
        self.headers.append(proxy_data)
        return True


def haproxy_config(frontend_fd: int, backend_port: int, option: str) -> str:
    return f"""\
global
    maxconn 50

defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s

frontend smtp_in
    bind fd@{frontend_fd}
    default_backend smtpkit

backend smtpkit
    server s1 {HOST}:{backend_port} {option}
"""


@contextmanager
def haproxy(tmp_path: Path, backend_port: int, option: str) -> Iterator[int]:
    """Run HAProxy in the foreground; yield its frontend port.

    The frontend is a socket bound here to a free port and handed to HAProxy
    (``bind fd@N``): no race for the port, and connections wait in its
    backlog until HAProxy is ready.
    """
    if HAPROXY is None:
        pytest.fail("haproxy is not installed, and CI is set")
    with socket.create_server((HOST, 0)) as frontend:
        frontend.set_inheritable(True)
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(frontend.fileno(), backend_port, option))
        # -db: stay in the foreground (no daemon mode), so the test owns the process.
        process = subprocess.Popen(
            [HAPROXY, "-db", "-f", str(config)],
            pass_fds=[frontend.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            yield frontend.getsockname()[1]
        finally:
            process.terminate()
            try:
                _, errors = process.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                _, errors = process.communicate()
            print(errors.decode(errors="replace"))  # shown when the test fails


@pytest.mark.parametrize(("option", "version"), [("send-proxy", 1), ("send-proxy-v2", 2)])
def test_handle_proxy_sees_the_original_client(
    server: Any, tmp_path: Path, option: str, version: int
) -> None:
    handler = ProxyRecorder()
    running = server(handler, proxy_protocol_timeout=5.0, proxy_trusted_networks=["127.0.0.0/8"])
    with (
        haproxy(tmp_path, running.port, option) as frontend_port,
        smtplib.SMTP(HOST, frontend_port, local_hostname="client.test", timeout=10) as client,
    ):
        client_port = client.sock.getsockname()[1]
        client.sendmail("a@example.com", ["b@example.com"], b"Subject: hi\r\n\r\nHello.\r\n")
    data = handler.headers[-1]
    assert data.version == version
    assert data.command is (None if version == 1 else V2_CMD.PROXY)
    assert data.family is AF.INET and data.protocol is PROTO.STREAM
    assert data.src_addr == ipaddress.ip_address(HOST)
    assert data.src_port == client_port
    assert data.dst_addr == ipaddress.ip_address(HOST)
    assert data.dst_port == frontend_port
    # The session that delivered the message carries the same header, while its
    # peer is HAProxy's own connection to smtpkit.
    session = handler.sessions[-1]
    assert session.proxy_data is data
    assert session.peer[1] != client_port
    assert handler.envelopes[-1].rcpt_tos == ["b@example.com"]


def test_haproxy_outside_the_trusted_networks_is_refused(server: Any, tmp_path: Path) -> None:
    handler = ProxyRecorder()
    running = server(handler, proxy_protocol_timeout=5.0, proxy_trusted_networks=["10.0.0.0/8"])
    with (
        haproxy(tmp_path, running.port, "send-proxy-v2") as frontend_port,
        pytest.raises(smtplib.SMTPServerDisconnected),
    ):
        smtplib.SMTP(HOST, frontend_port, local_hostname="client.test", timeout=10)
    assert handler.headers == []
