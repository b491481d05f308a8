"""The deployment recipes of ``docs/deployment.md``, exercised where this machine can.

* ``deploy/smtpkit.service``: parses as INI, its ExecStart parses as smtpkit flags, and
  ``systemd-analyze verify`` accepts it (when systemd-analyze is installed);
* ``deploy/smtpkit.toml``: loads as a ServerConfig;
* ``deploy/haproxy.cfg``: ``haproxy -c`` accepts it, and a real HAProxy run from it
  relays to ``smtpkit run --proxy-protocol`` with PROXY v2 (the original client's
  address reaches smtpkit);
* ``deploy/postfix/``: ``postconf`` and ``postmap`` read the snippets;
* port 25 without root: an unprivileged user binds a privileged port with the
  ambient CAP_NET_BIND_SERVICE that the unit's ``AmbientCapabilities`` grants. That
  user runs a copy of smtpkit and of the packages it imports, made in a folder every
  user can read, since the checkout may live where others cannot enter.

A missing program skips its test, unless the CI environment variable is set.
"""

from __future__ import annotations

import configparser
import json
import os
import pwd
import re
import shlex
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from smtpkit._cli.options import overrides_from
from smtpkit.cli import build_parser
from smtpkit.config import ServerConfig

from .conftest import Start
from .helpers import HOST, READY, clean_env, maildir_messages

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "smtpkit.service"


def program(name: str) -> str:
    """The path of a program; skip without it, but fail when CI is set."""
    path = shutil.which(name) or next(
        (f"{d}/{name}" for d in ("/usr/sbin", "/sbin") if os.access(f"{d}/{name}", os.X_OK)),
        None,
    )
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed, and CI is set")
        pytest.skip(f"{name} is not installed")
    return path


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser


# -- systemd ---------------------------------------------------------------------------


def test_unit_parses_and_runs_without_root() -> None:
    parsed = unit()
    assert parsed.sections() == ["Unit", "Service", "Install"]
    service = parsed["Service"]
    assert service["User"] == "smtpkit"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    # SIGTERM to the supervisor only; it drains its workers itself.
    assert (service["KillSignal"], service["KillMode"]) == ("SIGTERM", "mixed")
    # systemctl reload: SIGHUP to the supervisor, a rolling restart of the workers.
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert parsed["Install"]["WantedBy"] == "multi-user.target"


def test_unit_command_line_is_valid_smtpkit_flags() -> None:
    command = shlex.split(unit()["Service"]["ExecStart"])
    assert command[0].endswith("/smtpkit")
    namespace = build_parser().parse_args(command[1:])
    overrides = overrides_from(namespace)
    assert overrides["listen.port"] == 25
    config = ServerConfig.load(env={}, overrides=overrides)
    # systemd must wait longer than the graceful timeout before it kills.
    stop_timeout = float(unit()["Service"]["TimeoutStopSec"])
    assert config.workers.graceful_timeout < stop_timeout


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = program("systemd-analyze")
    # The unit names the installed script; verify needs an executable that exists.
    script = Path(sys.executable).with_name("smtpkit")
    text = UNIT.read_text().replace("/opt/smtpkit/venv/bin/smtpkit", str(script))
    assert text != UNIT.read_text()
    copy = tmp_path / "smtpkit.service"
    copy.write_text(text)
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=READY, check=False
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_config_example_loads() -> None:
    config = ServerConfig.load(DEPLOY / "smtpkit.toml", env={})
    assert config.hostname == "mx.example.com"
    assert config.limits.max_connections_per_ip == 20
    assert config.tls.cert_file == "/etc/smtpkit/tls/fullchain.pem"


# -- HAProxy ---------------------------------------------------------------------------


def test_haproxy_config_is_valid() -> None:
    haproxy = program("haproxy")
    result = subprocess.run(
        [haproxy, "-c", "-f", str(DEPLOY / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=READY,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Warnings were found" not in result.stdout + result.stderr


def haproxy_config(frontend_fd: int, backend_port: int) -> str:
    """deploy/haproxy.cfg, listening on a socket of the test, relaying to one smtpkit."""
    text = (DEPLOY / "haproxy.cfg").read_text()
    text, binds = re.subn(r"(?m)^(\s+bind) :25$", rf"\1 fd@{frontend_fd}", text)
    servers = re.findall(r"(?m)^\s+server mx\d \S+ (.*)$", text)
    assert binds == 1 and len(servers) == 2
    text = re.sub(r"(?m)^\s+server mx\d .*\n", "", text)
    return text + f"    server mx1 {HOST}:{backend_port} {servers[0]}\n"


@contextmanager
def haproxy(tmp_path: Path, backend_port: int) -> Iterator[int]:
    """Run HAProxy in the foreground; yield its frontend port.

    The frontend socket is bound here and handed over (``bind fd@N``): no race for
    the port, and connections wait in its backlog until HAProxy is ready.
    """
    binary = program("haproxy")
    with socket.create_server((HOST, 0)) as frontend:
        frontend.set_inheritable(True)
        config = tmp_path / "haproxy.cfg"
        config.write_text(haproxy_config(frontend.fileno(), backend_port))
        process = subprocess.Popen(
            [binary, "-db", "-f", str(config)],
            pass_fds=[frontend.fileno()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            wait_for_greeting(frontend.getsockname()[1], process)
            yield frontend.getsockname()[1]
        finally:
            process.terminate()
            try:
                _, errors = process.communicate(timeout=READY)
            except subprocess.TimeoutExpired:
                process.kill()
                _, errors = process.communicate()
            print(errors.decode(errors="replace"))  # shown when the test fails


def wait_for_greeting(port: int, process: subprocess.Popen[bytes]) -> None:
    """Wait until a connection through HAProxy gets smtpkit's greeting."""
    deadline = time.monotonic() + READY
    while True:
        assert process.poll() is None, "haproxy exited"
        try:
            with socket.create_connection((HOST, port), timeout=2) as probe:
                if probe.recv(100).startswith(b"220 "):
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, "no greeting through haproxy"
        time.sleep(0.2)


def test_behind_haproxy_with_proxy_protocol_v2(start: Start, tmp_path: Path) -> None:
    env = {"SMTPKIT_PROXY_PROTOCOL__TRUSTED_NETWORKS": "127.0.0.1/32"}
    command = start("run", "--port", "0", "--proxy-protocol", env=env)
    backend = command.port()
    with (
        haproxy(tmp_path, backend) as frontend,
        smtplib.SMTP(HOST, frontend, timeout=READY) as client,
    ):
        client_port = client.sock.getsockname()[1]
        client.sendmail("a@example.com", ["b@example.com"], "Subject: via haproxy\r\n\r\nx\r\n")
    # The line shows the address HAProxy reported: the client's own port, not the
    # port of HAProxy's connection to smtpkit.
    line = command.wait_for(r'subject="via haproxy" client=(\S+)', "stdout")
    assert line.group(1) == f"{HOST}:{client_port}"
    assert len(maildir_messages(tmp_path / "smtpkit-mail")) == 1


# -- Postfix ---------------------------------------------------------------------------


def test_postfix_snippets(tmp_path: Path) -> None:
    postconf, postmap = program("postconf"), program("postmap")
    shutil.copy(DEPLOY / "postfix" / "main.cf", tmp_path / "main.cf")
    (tmp_path / "master.cf").write_text("")
    shown = subprocess.run(
        [postconf, "-c", str(tmp_path), "-n"], capture_output=True, text=True, check=True
    ).stdout
    assert "relayhost = [127.0.0.1]:2525\n" in shown
    assert "transport_maps = hash:/etc/postfix/transport\n" in shown
    table = f"texthash:{DEPLOY / 'postfix' / 'transport'}"
    for domain in ("app.example.com", ".app.example.com"):
        found = subprocess.run(
            [postmap, "-c", str(tmp_path), "-q", domain, table],
            capture_output=True,
            text=True,
            check=True,
        )
        assert found.stdout == "smtp:[127.0.0.1]:2525\n"


# -- port 25 without root --------------------------------------------------------------


# Imports what ``smtpkit run`` needs, then prints the top-level modules that come from
# outside the standard library: smtpkit itself and the installed packages.
_IMPORTED = """
import json, sys
import anyio, anyio._backends._asyncio, anyio.to_thread
import smtpkit.cli, smtpkit.default_app, smtpkit.server, smtpkit._cli.serving

found = {}
for name, module in sorted(sys.modules.items()):
    path = getattr(module, "__file__", None)
    if path and "." not in name and (
        name == "smtpkit" or {"site-packages", "dist-packages"} & set(path.split("/"))
    ):
        found[name] = path
print(json.dumps(found))
"""


def readable_copy(folder: Path) -> Path:
    """Copy smtpkit and the packages it imports into ``folder/lib``, readable by all.

    The checkout and its virtual environment may sit in a folder that other users
    cannot enter (a home folder with mode 0700, a ``mktemp -d`` folder): an
    unprivileged user could not import smtpkit from there.

    Returns:
        The folder to put on that user's PYTHONPATH.
    """
    listed = subprocess.run(
        [sys.executable, "-c", _IMPORTED], capture_output=True, text=True, check=True
    )
    lib = folder / "lib"
    lib.mkdir()
    for name, path in json.loads(listed.stdout).items():
        source = Path(path)
        if source.name == "__init__.py":
            ignore = shutil.ignore_patterns("__pycache__")
            shutil.copytree(source.parent, lib / name, ignore=ignore)
        else:
            shutil.copy2(source, lib / source.name)
    for place, _, files in os.walk(lib):
        os.chmod(place, 0o755)
        for file in files:
            os.chmod(os.path.join(place, file), 0o644)
    return lib


def _runnable_python(as_user: list[str], cwd: Path, env: dict[str, str]) -> str:
    """An interpreter of this Python version that runs smtpkit as the user ``as_user``.

    This one, or the one its virtual environment was made from; skip when the user
    can run neither (both under a folder that user may not enter).
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    check = "import sys, smtpkit; print('%d.%d' % sys.version_info[:2])"
    base = getattr(sys, "_base_executable", sys.executable)
    reason = ""
    for python in dict.fromkeys([sys.executable, base]):
        probe = subprocess.run(
            [*as_user, python, "-c", check],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=READY,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return python
        lines = probe.stderr.strip().splitlines() or [f"Python {probe.stdout.strip()}"]
        reason += f"; {python}: {lines[-1]}"
    pytest.skip(f"user nobody can run no Python {version} with smtpkit{reason}")


def privileged_free_port() -> int:
    """A free port below 1024 that unprivileged users may not bind."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    for port in range(min(start, 1024) - 1, 0, -1):
        try:
            with socket.create_server((HOST, port)):
                return port
        except OSError:
            continue
    pytest.skip("no privileged port is free, or every port is unprivileged here")


def test_an_unprivileged_user_binds_a_privileged_port_with_the_capability(
    request: pytest.FixtureRequest,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root, to switch to an unprivileged user")
    setpriv = program("setpriv")
    port = privileged_free_port()
    # The test's own folder is not reachable by other users: use a shared one.
    shared = Path(tempfile.mkdtemp(prefix="smtpkit-nobody-"))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    shared.chmod(0o777)
    maildir = shared / "mail"
    as_nobody = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    env = clean_env({"PYTHONPATH": str(readable_copy(shared))})
    smtpkit = [
        _runnable_python(as_nobody, shared, env),
        "-m",
        "smtpkit",
        "run",
        "--port",
        str(port),
        "--maildir",
        str(maildir),
    ]

    refused = subprocess.run(
        [*as_nobody, *smtpkit],
        cwd=shared,
        env=env,
        capture_output=True,
        text=True,
        timeout=READY,
        check=False,
    )
    assert refused.returncode == 1
    assert f"listen.port = {port}" in refused.stderr and "ermission denied" in refused.stderr

    caps = ["--inh-caps=+net_bind_service", "--ambient-caps=+net_bind_service"]
    process = subprocess.Popen(
        [*as_nobody, *caps, *smtpkit],
        cwd=shared,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + READY
        while True:
            try:
                client = smtplib.SMTP(HOST, port, timeout=READY)
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        with client:
            client.sendmail("a@example.com", ["b@example.com"], "Subject: low port\r\n\r\nx\r\n")
        nobody = pwd.getpwnam("nobody").pw_uid
        assert f"\nUid:\t{nobody}\t" in Path(f"/proc/{process.pid}/status").read_text()
        (stored,) = maildir_messages(maildir)
        assert maildir.stat().st_uid == nobody
    finally:
        process.terminate()
        process.communicate(timeout=READY)
    assert b"Subject: low port" in stored
