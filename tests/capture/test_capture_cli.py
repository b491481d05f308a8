"""``smtpkit run --http``: release to allowed servers, basic auth, refusals at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from capture.capture_server import HOST, Capture, message, running, start, stop, wait_until


def run_briefly(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """A ``smtpkit run`` that is expected to refuse to start."""
    return subprocess.run(
        [sys.executable, "-m", "smtpkit", "run", "--port=0", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_release_to_an_allowed_server_and_refused_elsewhere(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    (tmp_path / "ui").mkdir()
    with running(tmp_path / "target", http=None) as target:
        allowed = f"{HOST}:{target.smtp_port}"
        with running(tmp_path / "ui", f"--http-release-to={allowed}") as capture:
            capture.send(message(subject="Send me on"), rcpt_tos=["carol@example.com"])
            (path,) = (capture.maildir / "new").iterdir()
            with httpx.Client(base_url=capture.url, timeout=30) as client:
                assert client.get("/api/v1/release-targets").json() == {"targets": [allowed]}
                url = f"/api/v1/messages/{path.name}/release"
                refused = client.post(url, json={"to": f"{HOST}:1"})
                assert refused.status_code == 403
                assert refused.json()["error"] == (
                    f"to: '{HOST}:1' is not an allowed release target (allowed: {allowed}; "
                    "add it with --http-release-to)"
                )
                assert client.post(url, json={"to": 25}).status_code == 400
                json_type = {"Content-Type": "application/json"}
                assert client.post(url, content=b"{", headers=json_type).status_code == 400
                form = client.post(
                    url, content=f'{{"to": "{allowed}"}}', headers={"Content-Type": "text/plain"}
                )
                assert form.status_code == 415
                done = client.post(url, json={"to": allowed})
                assert done.status_code == 200, done.text
                assert done.json() == {
                    "released": path.name,
                    "to": allowed,
                    "rcpt_tos": ["carol@example.com"],
                }
        wait_until(lambda: any((target.maildir / "new").iterdir()), "the released message")
        (sent,) = (target.maildir / "new").iterdir()
        content = sent.read_bytes()
        assert b"Subject: Send me on\n" in content
        assert b"X-RcptTo: carol@example.com\n" in content
        assert content.count(b"X-Peer:") == 1  # the capture's envelope headers were not sent on


def test_release_is_refused_when_no_target_is_allowed(
    capture: Capture, client: httpx.Client
) -> None:
    capture.send(message())
    (path,) = (capture.maildir / "new").iterdir()
    reply = client.post(f"/api/v1/messages/{path.name}/release", json={"to": f"{HOST}:25"})
    assert reply.status_code == 403
    assert "allowed: none" in reply.json()["error"]


def test_basic_auth_when_credentials_are_given(tmp_path: Path) -> None:
    with running(tmp_path, "--http-auth=alice:s3cret") as capture:
        assert httpx.get(capture.url + "api/v1/messages").status_code == 401
        wrong = httpx.get(capture.url, auth=("alice", "wrong"))
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Basic")
        right = httpx.get(capture.url + "api/v1/messages", auth=("alice", "s3cret"))
        assert (right.status_code, right.json()["total"]) == (200, 0)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "192.0.2.1"])
def test_beyond_loopback_without_credentials_it_refuses_to_start(tmp_path: Path, host: str) -> None:
    result = run_briefly(tmp_path, f"--http={host}:8026")
    assert result.returncode == 2
    assert result.stderr == (
        f"smtpkit run: error: --http {host}:8026: listening beyond loopback needs credentials "
        "(--http-auth USER:PASSWORD or SMTPKIT_HTTP_AUTH) or --http-insecure\n"
    )
    assert not (tmp_path / "smtpkit-mail").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http=nowhere"], "--http: 'nowhere' is not an address; expected HOST:PORT"),
        (["--http=127.0.0.1:99999"], "--http: '127.0.0.1:99999' is not an address"),
        (["--http", "--http-auth=alice"], "--http-auth: expected USER:PASSWORD"),
        (["--http-release-to=127.0.0.1:25"], "--http-release-to need --http"),
        (["--http", "--http-release-to=x"], "--http-release-to: 'x' is not an address"),
    ],
)
def test_bad_http_flags_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_briefly(tmp_path, *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1


def test_without_the_extra_http_fails_with_one_line(tmp_path: Path) -> None:
    fake = tmp_path / "fake" / "starlette"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named starlette')\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "fake")}
    result = run_briefly(tmp_path, "--http", env=env)
    assert result.returncode == 2
    assert result.stderr == (
        "smtpkit run: error: --http needs the http extra: python3 -m pip install "
        "'smtpkit-server[http]' (cannot import starlette: No module named starlette)\n"
    )


def test_a_taken_http_port_fails_in_one_line(capture: Capture, tmp_path: Path) -> None:
    taken = capture.url.removeprefix("http://").rstrip("/")
    result = run_briefly(tmp_path, f"--http={taken}")
    assert result.returncode == 1
    assert f"smtpkit run: error: cannot listen on http://{taken}: Address already in use" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr  # it stopped before SMTP listened


def test_with_workers_worker_one_serves_the_mail_of_all(tmp_path: Path) -> None:
    with running(tmp_path, "--workers=2") as capture:
        for number in range(16):  # the kernel spreads connections over both workers
            capture.send(message(subject=f"Number {number}"))
        page = httpx.get(capture.url + "api/v1/messages", params={"limit": 100}).json()
        assert page["total"] == 16
        pids = {m["id"].split(".")[1].split("P")[1].split("Q")[0] for m in page["messages"]}
        assert len(pids) == 2, pids  # stored by two processes, listed by one
        assert capture.output().count("capture UI on") == 1


def test_stops_cleanly_with_an_event_stream_open(tmp_path: Path) -> None:
    capture = start(tmp_path)
    try:
        with httpx.stream("GET", capture.url + "api/v1/events", timeout=30) as events:
            assert next(events.iter_lines()) == "retry: 1000"
            assert stop(capture) == 0
    finally:
        stop(capture)
    # The last lines may still be on their way from the pipe.
    wait_until(lambda: capture.output().rstrip().endswith("INFO smtpkit.cli: stopped"), "stopped")


def test_credentials_and_release_targets_from_the_environment(tmp_path: Path) -> None:
    env = {"SMTPKIT_HTTP_AUTH": "bob:pa55", "SMTPKIT_HTTP_RELEASE_TO": "127.0.0.1:2525, [::1]:25"}
    with running(tmp_path, env=env) as capture:
        assert httpx.get(capture.url).status_code == 401
        reply = httpx.get(capture.url + "api/v1/release-targets", auth=("bob", "pa55"))
        assert reply.json() == {"targets": ["127.0.0.1:2525", "[::1]:25"]}
