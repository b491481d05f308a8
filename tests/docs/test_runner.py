"""The docs runner itself: it passes a page that does what it says and fails one that does not."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from .pages import PageError, matches, parse_blocks
from .runner import PageRun

FENCE = "```"

GOOD_PAGE = f"""
# A page

{FENCE}python title="greet.py"
def greet(name):
    return f"hello {{name}}"
{FENCE}

{FENCE}python
from greet import greet
total = 40
{FENCE}

{FENCE}python
print(greet("docs"), total + 2)
{FENCE}

{FENCE}text title="Output"
hello docs 42
{FENCE}

{FENCE}python
>>> total * 2
80
{FENCE}

{FENCE}console
$ python -c 'import greet; print(greet.greet("shell")); print("x"); print("y")'
hello shell
...
$ ls
greet.py
{FENCE}

<!-- not run: shown for reading -->
{FENCE}
anything at all
{FENCE}
"""


def run_page(tmp_path: Path, source: str) -> None:
    folder, logs = tmp_path / "page", tmp_path / "logs"
    folder.mkdir()
    logs.mkdir()
    PageRun("synthetic.md", folder, logs).run_source(source)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_page_that_does_what_it_says_passes(tmp_path: Path) -> None:
    run_page(tmp_path, GOOD_PAGE)
    assert (tmp_path / "page" / "greet.py").read_text().startswith("def greet")


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        ("hello docs 42\n", "hello docs 43\n"),
        ("$ ls\ngreet.py", "$ ls\nnot-there.py"),
        ("80\n", "81\n"),
        ("total = 40\n", "total = 40\nraise RuntimeError('boom')\n"),
        ("$ ls\n", "$ false\n$ ls\n"),
        ("<!-- not run: shown for reading -->\n", ""),
    ],
    ids=["output", "console", "doctest", "raises", "status", "unmarked"],
)
def test_a_page_that_does_not_fails(tmp_path: Path, wrong: str, message: str) -> None:
    assert wrong in GOOD_PAGE
    with pytest.raises(PageError, match=r"synthetic\.md:\d+"):
        run_page(tmp_path, GOOD_PAGE.replace(wrong, message, 1))


def test_a_background_server_is_waited_for_and_stopped(tmp_path: Path) -> None:
    port = free_port()
    page = f"""
{FENCE}console
$ smtpkit run --port {port} --maildir box &
$ python -c 'import smtplib; print(smtplib.SMTP("127.0.0.1", {port}).noop())'
(250, b'2.0.0 OK')
{FENCE}
"""
    run_page(tmp_path, page)
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, "the server outlived its page"


def test_a_block_that_hangs_fails_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import runner

    monkeypatch.setattr(runner, "STEP_TIMEOUT", 2.0)
    page = f"{FENCE}python\nimport time\ntime.sleep(30)\n{FENCE}\n"
    with pytest.raises(PageError, match="did not finish within 2 s"):
        run_page(tmp_path, page)


def test_ellipsis_matches_lines_and_text() -> None:
    assert matches("a\n...\nd", "a\nb\nc\nd\n")
    assert matches("a\n...\nd", "a\nd")
    assert matches("port ...25", "port 8025")
    assert not matches("a\nd", "a\nb\nd")
    assert not matches("port ...25", "port 8026")


def test_an_output_block_must_follow_a_python_block() -> None:
    source = f'{FENCE}console\n$ ls\n{FENCE}\n\n{FENCE}text title="Output"\nx\n{FENCE}\n'
    with pytest.raises(PageError, match=r"synthetic\.md:5: an Output block"):
        parse_blocks("synthetic.md", source)


def test_what_a_background_server_prints_is_checked(tmp_path: Path) -> None:
    port = free_port()
    page = f"""
{FENCE}console
$ smtpkit run --port {port} --maildir box &
...listening on 127.0.0.1:{port + 1}
...
{FENCE}
"""
    with pytest.raises(PageError, match=r"synthetic\.md:3: 'smtpkit run"):
        run_page(tmp_path, page)


def test_a_server_that_exits_at_once_fails_the_page(tmp_path: Path) -> None:
    page = f"{FENCE}console\n$ python -c 'raise SystemExit(3)' &\n{FENCE}\n"
    with pytest.raises(PageError, match="exited"):
        run_page(tmp_path, page)


def test_a_later_server_on_the_same_port_replaces_the_earlier(tmp_path: Path) -> None:
    port = free_port()
    page = f"""
{FENCE}console
$ smtpkit run --port {port} --maildir first &
$ smtpkit run --port {port} --maildir second &
$ python -c 'import smtplib; smtplib.SMTP("127.0.0.1", {port}).sendmail("a@b.c", ["d@e.f"], "x")'
$ ls second/new | wc -l
1
{FENCE}
"""
    run_page(tmp_path, page)
    assert not list((tmp_path / "page" / "first" / "new").iterdir())


def test_a_command_shown_as_text_is_refused(tmp_path: Path) -> None:
    page = f"{FENCE}text\n$ ls\ngreet.py\n{FENCE}\n"
    with pytest.raises(PageError, match="cannot run a 'text' block"):
        run_page(tmp_path, page)


def test_a_command_that_hangs_fails_within_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from . import runner

    monkeypatch.setattr(runner, "STEP_TIMEOUT", 2.0)
    page = f"{FENCE}console\n$ sleep 30\n{FENCE}\n"
    with pytest.raises(PageError, match="'sleep 30' did not finish within 2 s"):
        run_page(tmp_path, page)
