"""Reloading a running server: SIGHUP, ``smtpkit reload --pid-file``, rolling restarts.

A certificate rotation is checked with two real TLS clients (smtplib for the session that
started before it, ``openssl s_client -starttls smtp`` for the one after); the rolling
restart runs under load from Postfix's ``smtp-source``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import smtplib
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme

from .conftest import Start
from .helpers import EXIT, HOST, READY, Command, run_once, write

pytestmark = pytest.mark.timeout(300)

RELOADED = r"SIGHUP: reloaded the configuration"
REFUSED = r"SIGHUP: reload refused, the previous configuration stays: (.*)"
SMTP_SOURCE = "/usr/sbin/smtp-source"


def issue(ca: trustme.CA, folder: Path) -> bytes:
    """Write a new certificate (and key) for 127.0.0.1 to ``folder``; its SHA-256 fingerprint."""
    cert = ca.issue_cert(HOST)
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    return fingerprint(cert.cert_chain_pems[0].bytes().decode())


def fingerprint(pem: str) -> bytes:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).digest()


def openssl_fingerprint(port: int) -> bytes:
    """Connect with ``openssl s_client -starttls smtp``; the fingerprint of the server's cert."""
    result = subprocess.run(
        ["openssl", "s_client", "-starttls", "smtp", "-connect", f"{HOST}:{port}"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=READY,
        check=False,
    )
    found = re.search(
        r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", result.stdout, re.S
    )
    assert found, result.stdout + result.stderr
    return fingerprint(found.group(0))


def greeting(port: int) -> str:
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        return client.ehlo_resp.decode() if client.ehlo()[0] == 250 else ""


def reload(command: Command, pid_file: Path, tmp_path: Path, expect: str = RELOADED) -> str:
    """``smtpkit reload --pid-file``; wait for the server's line matching ``expect``."""
    start = command.count()
    result = run_once("reload", "--pid-file", str(pid_file), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"smtpkit reload: sent SIGHUP to process {command.pid}\n"
    return command.wait_for(expect, start=start).group(0)


def wait_for_file(path: Path) -> None:
    deadline = time.monotonic() + READY
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} was never written"
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_rotated_certificate_is_seen_by_new_sessions_only(start: Start, tmp_path: Path) -> None:
    ca = trustme.CA()
    old = issue(ca, tmp_path)
    pid_file = tmp_path / "smtpkit.pid"
    command = start(
        "run", "--port", "0", "--tls-cert", "cert.pem", "--tls-key", "key.pem",
        "--maildir", "mail", "--pid-file", str(pid_file),
    )  # fmt: skip
    port = command.port()
    wait_for_file(pid_file)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.starttls(context=context)
        assert client.sock is not None
        assert hashlib.sha256(client.sock.getpeercert(binary_form=True) or b"").digest() == old
        client.ehlo("client.example")
        client.mail("alice@example.com")
        client.rcpt("bob@example.com")
        assert client.docmd("DATA")[0] == 354

        new = issue(ca, tmp_path)
        assert new != old
        reload(command, pid_file, tmp_path)
        assert openssl_fingerprint(port) == new

        client.send(b"Subject: sent across a reload\r\n\r\nHello.\r\n.\r\n")
        code, _ = client.getreply()
        assert code == 250
        # The old session still speaks over the old certificate's connection.
        assert hashlib.sha256(client.sock.getpeercert(binary_form=True) or b"").digest() == old
    assert len(os.listdir(tmp_path / "mail" / "new")) == 1


def test_a_bad_config_on_sighup_is_refused_and_the_old_one_stays(
    start: Start, tmp_path: Path
) -> None:
    config = write(tmp_path, "smtpkit.toml", 'hostname = "one.example"\n')
    pid_file = tmp_path / "run" / "smtpkit.pid"
    pid_file.parent.mkdir()
    command = start("run", "--config", str(config), "--port", "0", "--pid-file", str(pid_file))
    port = command.port()
    wait_for_file(pid_file)
    assert greeting(port).startswith("one.example")

    write(tmp_path, "smtpkit.toml", 'hostname = "two.example"\n[limits]\nmax_recipients = 5\n')
    line = reload(command, pid_file, tmp_path, expect=REFUSED)
    assert "limits.max_recipients = 5" in line
    assert greeting(port).startswith("one.example")

    write(tmp_path, "smtpkit.toml", 'hostname = "two.example"\n')
    command.send_signal(signal.SIGHUP)
    command.wait_for(RELOADED)
    assert greeting(port).startswith("two.example")

    command.send_signal()
    assert command.wait() == 0
    assert not pid_file.exists()


def test_reload_says_why_it_cannot_signal(tmp_path: Path) -> None:
    missing = run_once("reload", "--pid-file", "nowhere.pid", cwd=tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.startswith(
        "smtpkit reload: error: cannot read the pid file 'nowhere.pid'"
    )
    write(tmp_path, "bad.pid", "twelve\n")
    bad = run_once("reload", "--pid-file", "bad.pid", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr == "smtpkit reload: error: 'bad.pid' holds 'twelve'; expected a process id\n"
    gone = subprocess.Popen(["true"])
    gone.wait()
    write(tmp_path, "gone.pid", f"{gone.pid}\n")
    stale = run_once("reload", "--pid-file", "gone.pid", cwd=tmp_path)
    assert stale.returncode == 1
    assert f"no process {gone.pid} (from 'gone.pid')" in stale.stderr


@pytest.mark.skipif(not os.access(SMTP_SOURCE, os.X_OK), reason="needs Postfix's smtp-source")
def test_a_rolling_restart_under_load_refuses_and_loses_nothing(
    start: Start, tmp_path: Path
) -> None:
    pid_file = tmp_path / "smtpkit.pid"
    command = start(
        "run", "--workers", "2", "--port", "0", "--maildir", "mail", "--pid-file", str(pid_file),
    )  # fmt: skip
    port = int(command.wait_for(r"2 workers serving .* on port (\d+)").group(1))
    started = command.wait_for_all(r"worker (\d) started \(pid (\d+)\)", 2)
    old = {int(m.group(2)) for m in started}
    for pid in old:
        command.wait_for(rf"\[{pid}\] INFO smtpkit.cli: listening on ")
    wait_for_file(pid_file)
    messages = 3000
    load = subprocess.Popen(
        [SMTP_SOURCE, "-s", "5", "-m", str(messages), "-l", "1024", f"{HOST}:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        new = tmp_path / "mail" / "new"
        deadline = time.monotonic() + READY
        while not (new.exists() and len(os.listdir(new)) >= 100):
            assert load.poll() is None, load.communicate()
            assert time.monotonic() < deadline, "smtp-source delivered nothing"
            time.sleep(0.05)
        reload(command, pid_file, tmp_path, expect=r"SIGHUP: all 2 workers restarted")
        still_loading = load.poll() is None
        out, err = load.communicate(timeout=EXIT * 3)
    finally:
        if load.poll() is None:
            load.kill()
    assert still_loading, "smtp-source finished before the restart did: raise the count"
    assert (load.returncode, err) == (0, ""), out
    assert len(os.listdir(new)) == messages
    restarted = re.findall(
        r"worker \d restarted \(pid (\d+), replacing pid (\d+)\)", command.output()
    )
    assert {int(replaced) for _, replaced in restarted} == old
    assert not any(line for line in command.lines["stderr"] if "Traceback" in line)


def test_a_rolling_restart_stops_at_a_worker_that_cannot_start(
    start: Start, tmp_path: Path
) -> None:
    config = write(tmp_path, "smtpkit.toml", 'hostname = "one.example"\n')
    command = start("run", "--config", str(config), "--workers", "2", "--port", "0")
    port = int(command.wait_for(r"2 workers serving .* on port (\d+)").group(1))
    pids = {int(m.group(2)) for m in command.wait_for_all(r"worker (\d) started \(pid (\d+)\)", 2)}
    for pid in pids:
        command.wait_for(rf"\[{pid}\] INFO smtpkit.cli: listening on ")

    write(tmp_path, "smtpkit.toml", 'hostname = "two.example"\n[limits]\nmax_recipients = 5\n')
    begin = command.count()
    command.send_signal(signal.SIGHUP)
    # The worker exits with status 2 (a setting error); Python 3.10's child watcher can
    # lose that race with a child this quick and report 255 instead.
    stopped = command.wait_for(
        r"SIGHUP: the new worker 1 \(pid (\d+)\) exited with status (?:2|255) before listening",
        start=begin,
    )
    assert int(stopped.group(1)) not in pids
    for _ in range(20):  # both old workers still serve, with the old configuration
        assert greeting(port).startswith("one.example")
    assert "worker 1 restarted" not in command.output()
    command.send_signal()
    assert command.wait() == 0
    for pid in pids:
        command.wait_for(rf"worker \d \(pid {pid}\) stopped")


AUTH_APP = """
from smtpkit import App, ServerConfig
from smtpkit.auth import PasswordFileAuthenticator

app = App(ServerConfig(hostname="auth.example"))
app.authenticator(PasswordFileAuthenticator("passwd"))


@app.route("(user)@example.com")
def inbox(message):
    pass
"""


def login(port: int, user: str, password: str) -> int:
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.ehlo("client.example")
        try:
            return client.login(user, password)[0]
        except smtplib.SMTPAuthenticationError as exc:
            return exc.smtp_code


def add_user(tmp_path: Path, user: str, password: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "smtpkit.auth", "add-user", "passwd", user, "--password-stdin"],
        cwd=tmp_path,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=EXIT,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_sighup_reads_the_password_file_again_and_keeps_it_when_broken(
    start: Start, tmp_path: Path
) -> None:
    write(tmp_path, "authapp.py", AUTH_APP)
    add_user(tmp_path, "alice", "wonderland")
    env = {"SMTPKIT_AUTH__REQUIRE_TLS": "false"}
    command = start("run", "authapp:app", "--port", "0", env=env)
    port = command.port()
    assert login(port, "alice", "wonderland") == 235

    (tmp_path / "passwd").write_text("alice:not-a-hash\n")
    begin = command.count()
    command.send_signal(signal.SIGHUP)
    command.wait_for(r"ERROR smtpkit.routing: keeping the previous users of passwd: ", start=begin)
    command.wait_for(RELOADED, start=begin)
    assert login(port, "alice", "wonderland") == 235

    (tmp_path / "passwd").unlink()
    add_user(tmp_path, "bob", "builder")
    begin = command.count()
    command.send_signal(signal.SIGHUP)
    command.wait_for(r"INFO smtpkit.auth: read 1 users from passwd", start=begin)
    assert login(port, "bob", "builder") == 235
    assert login(port, "alice", "wonderland") == 535
