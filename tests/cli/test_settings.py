"""Flags > SMTPKIT_ environment > config file > the app's own config > defaults."""

from __future__ import annotations

import smtplib
from pathlib import Path

import pytest

from .conftest import Start
from .helpers import HOST, READY, free_port, run_once, write


def greeting_and_size(port: int) -> tuple[bytes, str | None]:
    """The host name in the 220 greeting, and the SIZE EHLO advertises."""
    client = smtplib.SMTP(timeout=READY)
    try:
        code, greeting = client.connect(HOST, port)
        assert code == 220
        client.ehlo()
        return greeting.split()[0], client.esmtp_features.get("size")
    finally:
        client.quit()


@pytest.mark.timeout(180)
def test_each_source_wins_over_the_ones_below(start: Start, project: Path) -> None:
    file_port, env_port, flag_port = free_port(), free_port(), free_port()
    write(
        project,
        "smtpkit.toml",
        f'hostname = "file.example"\n[listen]\nport = {file_port}\n[limits]\ndata_size = 1000\n',
    )
    write(project, "decoy.toml", 'hostname = "decoy.example"\n')

    # --config beats SMTPKIT_CONFIG; the flag beats the variable beats the file; the
    # file beats the app's config (hostname) and the defaults (SIZE).
    env = {"SMTPKIT_CONFIG": "decoy.toml", "SMTPKIT_LISTEN__PORT": str(env_port)}
    command = start(
        "run", "mailapp:app", "--config", "smtpkit.toml", "--port", str(flag_port), env=env
    )
    assert command.port() == flag_port
    assert greeting_and_size(flag_port) == (b"file.example", "1000")
    command.stop()

    env = {"SMTPKIT_LISTEN__PORT": str(env_port), "SMTPKIT_HOSTNAME": "env.example"}
    command = start("run", "mailapp:app", "--config", "smtpkit.toml", env=env)
    assert command.port() == env_port
    assert greeting_and_size(env_port) == (b"env.example", "1000")
    command.stop()

    write(project, "smtpkit.toml", f"[listen]\nport = {file_port}\n")
    command = start("run", "mailapp:app", env={"SMTPKIT_CONFIG": "smtpkit.toml"})
    assert command.port() == file_port
    # Settings no source names keep the app's value (its hostname), else the default.
    assert greeting_and_size(file_port) == (b"app.example", "33554432")


@pytest.mark.timeout(180)
def test_switches_override_the_environment(start: Start, project: Path) -> None:
    env = {"SMTPKIT_PROXY_PROTOCOL__TIMEOUT": "3", "SMTPKIT_LOG_LEVEL": "debug"}
    command = start("run", "--port", "0", "--no-proxy-protocol", "--log-level", "info", env=env)
    command.port()
    command.wait_for(r"extensions: ")
    command.stop()
    # With no option on, there is no "options:" line at all (it used to say "none").
    assert not any("options:" in line for line in command.lines["stderr"]), command.output()
    assert not any(" DEBUG " in line for line in command.lines["stderr"])

    command = start("run", "--port", "0", "--proxy-protocol", env=env)
    command.port()
    assert (
        command.wait_for(r"options: (.*)").group(1) == "PROXY protocol (timeout 3 s, from any peer)"
    )
    command.stop()

    command = start("run", "--port", "0", "--proxy-protocol")
    command.port()
    assert (
        command.wait_for(r"options: (.*)").group(1)
        == "PROXY protocol (timeout 10 s, from any peer)"
    )


@pytest.mark.parametrize(
    ("arguments", "env", "message"),
    [
        (
            ["--port", "abc"],
            {},
            "--port: listen.port = 'abc': Expected `int`, got `str` - at `$.listen.port`",
        ),
        (
            ["--port", "70000"],
            {},
            "--port: listen.port = 70000: expected a port number from 0 to 65535",
        ),
        (["--workers", "0"], {}, "--workers: workers.count = 0: expected an integer >= 1"),
        (
            ["--graceful-timeout", "-1"],
            {},
            "--graceful-timeout: workers.graceful_timeout = -1.0: expected a number of seconds > 0",
        ),
        (["--loop", "trio"], {}, "--loop: 'trio' is not a choice; expected one of asyncio, uvloop"),
        (
            ["--implicit-tls"],
            {},
            "--implicit-tls: tls.implicit = True: expected tls.cert_file to be set (implicit TLS "
            "needs a certificate)",
        ),
        (
            ["--tls-cert", "missing.pem"],
            {},
            "tls.cert_file = 'missing.pem': cannot read the file (No such file or directory)",
        ),
        (
            ["--no-proxy-protocol", "--proxy-protocol-timeout", "5"],
            {},
            "--no-proxy-protocol and --proxy-protocol-timeout contradict each other",
        ),
        (
            [],
            {"SMTPKIT_LISTEN__PORT": "abc"},
            "SMTPKIT_LISTEN__PORT: listen.port = 'abc': Expected `int`, got `str` - at "
            "`$.listen.port`",
        ),
        (
            [],
            {"SMTPKIT_LISTN__PORT": "1"},
            "SMTPKIT_LISTN__PORT: unknown environment variable; did you mean "
            "`SMTPKIT_LISTEN__PORT`?",
        ),
        (["--config", "nofile.toml"], {}, "nofile.toml: cannot read the config file (No such file"),
        (
            ["--config", "typo.toml"],
            {},
            "typo.toml: unknown key 'prot' - at `$.listen.prot`; did you mean `listen.port`?",
        ),
    ],
)
def test_bad_settings_name_their_source(
    project: Path, arguments: list[str], env: dict[str, str], message: str
) -> None:
    write(project, "typo.toml", "[listen]\nprot = 25\n")
    result = run_once("run", *arguments, cwd=project, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith("smtpkit run: error: " + message)
    assert "listening on" not in result.stderr


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_event_loop(start: Start, tmp_path: Path, loop: str) -> None:
    if loop == "uvloop":
        pytest.importorskip("uvloop")
    command = start("run", "--port", "0", "--loop", loop)
    port = command.port()
    command.wait_for(rf"\(pid {command.pid}, {loop}\): serving the embedded default")
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        client.sendmail("a@example.com", ["b@example.com"], f"Subject: on {loop}\r\n\r\nx\r\n")
    command.wait_for(rf'subject="on {loop}"', "stdout")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uvloop_that_cannot_be_imported_is_a_setting_error(tmp_path: Path, workers: str) -> None:
    # A uvloop package that fails to import stands for one that is missing or broken.
    write(tmp_path, "shadow/uvloop/__init__.py", "raise ImportError('no uvloop on this system')\n")
    env = {"PYTHONPATH": str(tmp_path / "shadow")}
    arguments = ["run", "--loop", "uvloop", "--port", "0", "--workers", workers]
    result = run_once(*arguments, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "smtpkit run: error: loop = 'uvloop': cannot import uvloop (no uvloop on this "
        "system); install smtpkit with its uvloop extra (in a checkout: python3 -m pip install "
        "'.[uvloop]') or use --loop asyncio\n"
    )


def test_a_wrong_type_in_the_file_is_an_error_even_when_overridden(project: Path) -> None:
    write(project, "wrong.toml", '[listen]\nport = "twenty-five"\n')
    for arguments, env in (
        (["--port", "0"], {}),
        ([], {"SMTPKIT_LISTEN__PORT": "0"}),
    ):
        result = run_once("run", "--config", "wrong.toml", *arguments, cwd=project, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr == (
            "smtpkit run: error: wrong.toml: Expected `int`, got `str` - at `$.listen.port`\n"
        )
