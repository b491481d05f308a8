"""The one serving engine: ``App.run()`` as ``smtpkit run``, and a reload of a running Engine.

``App.run()`` runs in a subprocess, as a script would; it is checked for the start-up
lines, the environment over the app's config, the one-line error for a taken port, and a
graceful drain on SIGTERM with a transfer in flight.
"""

from __future__ import annotations

import os
import queue
import signal
import smtplib
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from smtpkit import SMTP, ServerConfig
from smtpkit.server import Engine

HOST = "127.0.0.1"
TIMEOUT = 60.0

SCRIPT = textwrap.dedent(
    """
    import sys, time

    from smtpkit import App, ServerConfig

    app = App(ServerConfig().replace(**{{"hostname": "app.example", "listen.port": {port}}}))


    @app.route("(user)@example.com")
    def inbox(message):
        if b"slow" in message.content:
            time.sleep(2)
        print("delivered", message.capture["user"], flush=True)


    app.run()
    print("run returned", flush=True)
    """
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPKIT_")}
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def run_script(tmp_path: Path, port: int, **env: str) -> subprocess.Popen[str]:
    script = tmp_path / "mailapp.py"
    script.write_text(SCRIPT.format(port=port))
    return subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=clean_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until_listening(port: int, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            socket.create_connection((HOST, port), timeout=TIMEOUT).close()
            return
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def test_app_run_serves_like_smtpkit_run(tmp_path: Path) -> None:
    port = free_port()
    # The environment beats the app's config: another port, another name.
    process = run_script(
        tmp_path, 1, SMTPKIT_LISTEN__PORT=str(port), SMTPKIT_HOSTNAME="env.example"
    )
    try:
        wait_until_listening(port, process)
        client = smtplib.SMTP(HOST, port, timeout=TIMEOUT)
        assert client.ehlo()[1].startswith(b"env.example")
        client.mail("anne@example.com")
        client.rcpt("bob@example.com")
        assert client.docmd("DATA")[0] == 354
        process.send_signal(signal.SIGTERM)
        # The transfer in flight completes after SIGTERM; then the session is closed.
        client.send(b"Subject: slow\r\n\r\nslow\r\n.\r\n")
        assert client.getreply()[0] == 250
        assert client.getreply()[0] == 421
        client.close()
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert out.splitlines() == ["delivered bob", "run returned"]
    assert "INFO smtpkit.cli: smtpkit " in err and "serving App 'app'" in err
    assert f"INFO smtpkit.cli: listening on 127.0.0.1:{port}\n" in err
    # The same banner as smtpkit run: the extensions the App's configuration offers.
    assert "INFO smtpkit.cli: extensions: SIZE 33554432, 8BITMIME, DSN, PIPELINING, " in err
    assert "SIGTERM received: no new connections" in err
    assert err.rstrip().endswith("INFO smtpkit.cli: stopped")


def test_app_run_reports_a_taken_port_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = run_script(tmp_path, port)
        out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 1
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        f"smtpkit: error: cannot listen on listen.host = '127.0.0.1', listen.port = {port}: "
    )
    assert last.endswith("address already in use")
    assert "Traceback" not in err


def test_app_run_names_a_bad_variable(tmp_path: Path) -> None:
    process = run_script(tmp_path, free_port(), SMTPKIT_LIMITS__DATA_SIZE="big")
    _, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 2
    assert err.startswith("smtpkit: error: SMTPKIT_LIMITS__DATA_SIZE: ")
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal("asyncio") as running:
        yield running


class Handler:
    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        return f"250 stored by {server.hostname}"


def factory_for(config: ServerConfig) -> Any:
    handler = Handler()
    return lambda: SMTP(handler, config=config)


def test_a_reload_serves_new_sessions_and_leaves_open_ones(portal: BlockingPortal) -> None:
    base = {"listen.host": HOST, "listen.port": 0, "workers.graceful_timeout": 5.0}
    first = ServerConfig().replace(**base, hostname="first.example")
    second = first.replace(hostname="second.example", **{"listen.port": 1})
    engine = Engine(factory_for(first), first)
    stop = portal.call(anyio.Event)
    bound: queue.Queue[list[Any]] = queue.Queue()

    async def run() -> None:
        await engine.serve(ready=bound.put, stop=stop)

    future = portal.start_task_soon(run)
    port = bound.get(timeout=TIMEOUT)[0][1]
    try:
        with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as old:
            portal.call(engine.reload, factory_for(second), second)
            with smtplib.SMTP(HOST, port, timeout=TIMEOUT) as new:
                assert new.ehlo()[1].startswith(b"second.example")
                new.sendmail("a@example.com", ["b@example.com"], b"Hi.\r\n")
            assert old.ehlo()[1].startswith(b"first.example")
            old.mail("a@example.com")
            old.rcpt("b@example.com")
            code, text = old.data(b"Hi.\r\n")
            assert (code, text.endswith(b"stored by first.example")) == (250, True), text
        # The listen address cannot change without a restart.
        assert engine.config.listen.port == 0
        assert engine.config.hostname == "second.example"
    finally:
        portal.call(stop.set)
        future.result(TIMEOUT)
