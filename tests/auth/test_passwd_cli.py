"""``python -m smtpkit.auth``, run as a real subprocess."""

from __future__ import annotations

import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smtpkit.auth import LoginPassword, PasswordFileAuthenticator

REPO = Path(__file__).resolve().parents[2]
FAST = ["--scrypt-n", "1024"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "smtpkit.auth", *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        # Never reach the terminal the tests run in.
        start_new_session=True,
    )


def add(path: Path, user: str, password: str) -> subprocess.CompletedProcess[str]:
    return run("add-user", str(path), user, "--password-stdin", *FAST, stdin=password + "\n")


def login(path: Path, user: str, password: str) -> bool:
    auth = PasswordFileAuthenticator(path)
    result = auth(None, None, None, "PLAIN", LoginPassword(user.encode(), password.encode()))
    return result.success


def test_add_user_creates_private_file(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    done = add(path, "alice@example.com", "wonder land")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"added user 'alice@example.com' to {path}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert login(path, "alice@example.com", "wonder land")
    assert not login(path, "alice@example.com", "wonder")
    assert path.read_text().startswith("alice@example.com:scrypt$1024$8$1$")
    assert sorted(os.listdir(tmp_path)) == ["passwd"]


def test_add_user_replaces_existing_line(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    path.write_text("# users of mx1\n", encoding="utf-8")
    path.chmod(0o640)
    assert add(path, "alice", "one").returncode == 0
    assert add(path, "bob", "two").returncode == 0
    again = add(path, "alice", "three")
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"replaced the password of user 'alice' in {path}\n"
    lines = path.read_text().splitlines()
    assert lines[0] == "# users of mx1"
    assert [line.split(":")[0] for line in lines[1:]] == ["alice", "bob"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert login(path, "alice", "three")
    assert not login(path, "alice", "one")
    assert login(path, "bob", "two")


def test_running_authenticator_sees_new_user(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    assert add(path, "alice", "one").returncode == 0
    auth = PasswordFileAuthenticator(path)
    assert add(path, "carol", "c").returncode == 0
    result = auth(None, None, None, "LOGIN", LoginPassword(b"carol", b"c"))
    assert result.success


def test_password_stdin_keeps_spaces_and_drops_crlf(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    done = run("add-user", str(path), "u", "--password-stdin", *FAST, stdin=" p w \r\nignored\n")
    assert done.returncode == 0, done.stderr
    assert login(path, "u", " p w ")


def test_list_and_remove(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    for user in ("alice", "bob", "carol"):
        assert add(path, user, "pw").returncode == 0
    listed = run("list", str(path))
    assert (listed.returncode, listed.stdout) == (0, "alice\nbob\ncarol\n")
    assert "scrypt" not in listed.stdout

    removed = run("remove-user", str(path), "bob")
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == f"removed user 'bob' from {path}\n"
    assert run("list", str(path)).stdout == "alice\ncarol\n"
    assert not login(path, "bob", "pw")
    assert login(path, "carol", "pw")

    missing = run("remove-user", str(path), "bob")
    assert missing.returncode == 1
    assert missing.stderr == f"python -m smtpkit.auth: error: user 'bob' not found in {path}\n"


@pytest.mark.parametrize("command", [["list"], ["remove-user", "--", "alice"]])
def test_missing_file(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "nope"
    args = [command[0], str(path), *command[1:]]
    done = run(*args)
    assert done.returncode == 1
    assert done.stderr == f"python -m smtpkit.auth: error: {path}: no such file\n"
    assert not path.exists()


def test_malformed_file_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    content = "# header\nalice:plain-text-password\n"
    path.write_text(content, encoding="utf-8")
    done = add(path, "bob", "pw")
    assert done.returncode == 1
    assert f"error: {path}:2: user 'alice': expected 'scrypt$<n>" in done.stderr
    assert "(fix the file by hand first)" in done.stderr
    assert path.read_text() == content


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("a:b", "user name 'a:b': must not contain ':', whitespace or control characters"),
        ("a b", "user name 'a b': must not contain ':', whitespace or control characters"),
        ("#root", "user name '#root': must not start with '#'"),
    ],
)
def test_bad_user_name(tmp_path: Path, user: str, message: str) -> None:
    path = tmp_path / "passwd"
    done = add(path, user, "pw")
    assert done.returncode == 1
    assert done.stderr == f"python -m smtpkit.auth: error: {message}\n"
    assert not path.exists()


def test_empty_password_on_stdin(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    done = run("add-user", str(path), "alice", "--password-stdin", stdin="\n")
    assert done.returncode == 1
    assert done.stderr.endswith("error: no password on standard input\n")
    assert not path.exists()


def test_no_terminal_without_password_stdin(tmp_path: Path) -> None:
    done = run("add-user", str(tmp_path / "passwd"), "alice")
    assert done.returncode == 1
    assert "standard input is not a terminal; use --password-stdin" in done.stderr


def test_bad_scrypt_parameter(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    done = run("add-user", str(path), "alice", "--password-stdin", "--scrypt-n", "1000", stdin="pw")
    assert done.returncode == 1
    assert "scrypt n=1000: expected a power of two" in done.stderr
    assert not path.exists()


def test_usage_error_exits_2(tmp_path: Path) -> None:
    done = run("frobnicate", str(tmp_path))
    assert done.returncode == 2
    assert "usage: python -m smtpkit.auth" in done.stderr
    assert run().returncode == 2


# --- from a terminal ---------------------------------------------------------


def _attach_terminal() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The command running with a pseudo-terminal as its controlling tty."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        self.output = b""
        self.process = subprocess.Popen(
            [sys.executable, "-m", "smtpkit.auth", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
            preexec_fn=_attach_terminal,
        )
        os.close(slave)

    def expect(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, f"no {text!r} in {self.output!r}"
            if select.select([self.master], [], [], left)[0]:
                self.output += self._read()

    def send(self, text: bytes) -> None:
        os.write(self.master, text)

    def finish(self) -> int:
        code = self.process.wait(timeout=30)
        while select.select([self.master], [], [], 0)[0]:
            chunk = self._read()
            if not chunk:
                break
            self.output += chunk
        os.close(self.master)
        return code

    def _read(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except OSError:  # EIO once the child has closed its side
            return b""


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal handling is Linux-specific")
def test_prompts_twice_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    term = Terminal("add-user", str(path), "alice", *FAST)
    term.expect(b"Password: ")
    term.send(b"s3cret\n")
    term.expect(b"Repeat password: ")
    term.send(b"s3cret\n")
    assert term.finish() == 0, term.output
    assert b"s3cret" not in term.output  # echo was off
    assert b"added user 'alice'" in term.output
    assert login(path, "alice", "s3cret")


@pytest.mark.skipif(sys.platform != "linux", reason="pseudo-terminal handling is Linux-specific")
def test_mismatched_passwords_on_a_terminal(tmp_path: Path) -> None:
    path = tmp_path / "passwd"
    term = Terminal("add-user", str(path), "alice", *FAST)
    term.expect(b"Password: ")
    term.send(b"one\n")
    term.expect(b"Repeat password: ")
    term.send(b"two\n")
    assert term.finish() == 1
    assert b"error: the passwords do not match" in term.output
    assert not path.exists()
