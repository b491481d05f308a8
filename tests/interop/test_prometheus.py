"""A real Prometheus scrapes ``smtpkit run --http`` and sees its counters move as mail flows."""

from __future__ import annotations

import json
import shutil
import smtplib
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli.helpers import Command, free_port

from . import HOST, in_ci

#: Seconds to wait for Prometheus to start, scrape, and answer (a loaded machine is slow).
PATIENCE = 90.0
MESSAGE = "From: anne@example.test\r\nSubject: scraped\r\n\r\nHello.\r\n"

pytestmark = pytest.mark.interop


@pytest.fixture
def prometheus_binary() -> str:
    path = shutil.which("prometheus")
    if path is None:
        message = "prometheus is not installed (Debian: apt-get install prometheus)"
        if in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def smtpkit_http(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """``smtpkit run --http``: its SMTP and HTTP ports."""
    http_port = free_port()
    command = Command(
        ["run", "--port=0", f"--http={HOST}:{http_port}", f"--maildir={tmp_path / 'mail'}"],
        cwd=tmp_path,
    )
    try:
        command.wait_for(r"capture UI on http://")
        smtp_port = int(command.wait_for(r"listening on 127\.0\.0\.1:(\d+)").group(1))
        yield smtp_port, http_port
    finally:
        command.stop()


@pytest.fixture
def prometheus(
    prometheus_binary: str, smtpkit_http: tuple[int, int], tmp_path: Path
) -> Iterator[str]:
    """A Prometheus scraping the HTTP listener every second; its URL."""
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: smtpkit\n    scrape_interval: 1s\n"
        f"    static_configs:\n      - targets: ['{HOST}:{smtpkit_http[1]}']\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    process = subprocess.Popen(
        [
            prometheus_binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address={HOST}:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://{HOST}:{port}"
    try:
        wait(lambda: _ready(url), "Prometheus ready", process, tmp_path)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        log.close()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def query(url: str, expression: str) -> float | None:
    """The value of an instant query with one result, or None while there is none."""
    address = f"{url}/api/v1/query?query={urllib.parse.quote(expression)}"
    with urllib.request.urlopen(address, timeout=10) as reply:
        body = json.load(reply)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def wait(check: object, what: str, process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    assert callable(check)
    deadline = time.monotonic() + PATIENCE
    while not check():
        if process.poll() is not None or time.monotonic() > deadline:
            output = (tmp_path / "prometheus.log").read_text()
            raise AssertionError(f"{what}: not within {PATIENCE:g} s\n{output[-3000:]}")
        time.sleep(0.25)


def wait_for_value(url: str, expression: str, expected: float) -> None:
    deadline = time.monotonic() + PATIENCE
    seen = None
    while seen != expected:
        assert time.monotonic() < deadline, f"{expression} = {seen}, never {expected}"
        time.sleep(0.5)
        seen = query(url, expression)


def send(port: int, count: int) -> None:
    for _ in range(count):
        with smtplib.SMTP(HOST, port, timeout=30) as client:
            client.sendmail("anne@example.test", ["bob@example.test"], MESSAGE)


def test_prometheus_sees_mail_flow(prometheus: str, smtpkit_http: tuple[int, int]) -> None:
    smtp_port, _ = smtpkit_http
    wait_for_value(prometheus, 'up{job="smtpkit"}', 1.0)
    wait_for_value(prometheus, "smtpkit_messages_accepted_total", 0.0)
    send(smtp_port, 3)
    wait_for_value(prometheus, "smtpkit_messages_accepted_total", 3.0)
    wait_for_value(prometheus, "smtpkit_connections_total", 3.0)
    send(smtp_port, 2)
    wait_for_value(prometheus, "smtpkit_messages_accepted_total", 5.0)
    wait_for_value(prometheus, 'smtpkit_commands_total{verb="MAIL",reply="2xx"}', 5.0)
    wait_for_value(prometheus, "smtpkit_message_size_bytes_count", 5.0)
    wait_for_value(prometheus, "smtpkit_connections_open", 0.0)
