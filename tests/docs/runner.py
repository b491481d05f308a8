"""Run one docs page's blocks in a fresh folder; the conventions are in ``pages.py``."""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .pages import Block, PageError, classify, matches, parse_blocks

SESSION = Path(__file__).with_name("_session.py")
VENV_BIN = Path(sys.executable).parent
#: Seconds one python block or one command may take before the page fails.
STEP_TIMEOUT = 60.0
#: Seconds a background command gets to accept connections on its port.
START_TIMEOUT = 20.0
#: Seconds a background command gets after SIGINT, then after SIGTERM.
STOP_GRACE = (10.0, 5.0)
#: The port of ``smtpkit run`` when the command names none.
DEFAULT_PORT = 8025
PORT_PATTERNS = (
    re.compile(r"--port[= ](\d+)"),
    re.compile(r"\bSMTPKIT_LISTEN__PORT=(\d+)"),
    re.compile(r"[\w.\]]:(\d{2,5})\b"),
)


@dataclass(frozen=True)
class Command:
    """One ``$ `` line of a console block and the output shown under it."""

    line: int
    text: str
    expected: str

    @property
    def background(self) -> bool:
        """Whether the command ends with `` &``."""
        return self.text.endswith(" &")


@dataclass
class Background:
    """A command left running until the page is done."""

    command: Command
    where: str
    process: subprocess.Popen[bytes]
    log: Path
    ports: frozenset[int] = frozenset()


def parse_console(block: Block) -> list[Command]:
    """Split a console block into commands with their expected output."""
    commands: list[Command] = []
    lines = block.text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("$ "):
            raise PageError(f"{block.where}: console line {lines[index]!r} follows no command")
        start, text = index, lines[index][2:]
        while text.endswith("\\") and index + 1 < len(lines):
            index += 1
            text = text[:-1] + " " + lines[index].strip()
        index += 1
        output: list[str] = []
        while index < len(lines) and not lines[index].startswith("$ "):
            output.append(lines[index])
            index += 1
        commands.append(Command(block.line + 1 + start, text.strip(), "\n".join(output)))
    return commands


def page_env() -> dict[str, str]:
    """The environment of commands: this venv first on PATH, no SMTPKIT_ settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SMTPKIT_")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "100"
    return env


def command_port(text: str) -> int | None:
    """The port a command names: ``--port N``, ``SMTPKIT_LISTEN__PORT=N``, ``HOST:PORT``."""
    for pattern in PORT_PATTERNS:
        found = pattern.search(text)
        if found:
            return int(found[1])
    return None


def likely_ports(text: str, files: dict[str, str]) -> set[int]:
    """The ports a command may want: the one it names, else 8025 for ``smtpkit run``,
    else the port numbers written in the page's files that the command names."""
    named = command_port(text)
    if named is not None:
        return {named}
    if re.search(r"\bsmtpkit run\b", text):
        return {DEFAULT_PORT}
    ports: set[int] = set()
    for name, content in files.items():
        if name in text:
            ports.update(int(number) for number in re.findall(r"\b(\d{4,5})\b", content))
    return ports


def listening_ports(pid: int) -> frozenset[int]:
    """The TCP ports that ``pid`` or its descendants listen on (read from /proc)."""
    inodes: set[str] = set()
    for member in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{member}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                fields = row.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rpartition(":")[2], 16))
    return frozenset(ports)


def port_open(port: int) -> bool:
    """Whether something accepts connections on ``127.0.0.1:port``."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def wait_until_free(where: str, port: int) -> None:
    """Wait (bounded) until nothing listens on ``port``; another program may hold it briefly."""
    deadline = time.monotonic() + START_TIMEOUT
    while port_open(port):
        if time.monotonic() > deadline:
            raise PageError(f"{where}: port {port} is taken by another program")
        time.sleep(0.2)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop a command: SIGINT, then SIGTERM, then SIGKILL, each bounded.

    The signals go to the command's process group; whatever it started in a
    session of its own (a server's worker processes) is killed at the end if
    it is still running.
    """
    family = descendants(process.pid)
    for sig, grace in ((signal.SIGINT, STOP_GRACE[0]), (signal.SIGTERM, STOP_GRACE[1])):
        if process.poll() is not None:
            break
        _signal_group(process.pid, sig)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        _signal_group(process.pid, signal.SIGKILL)
        process.wait(STOP_GRACE[1])
    for pid in [process.pid, *family, *descendants(process.pid)]:
        _signal_group(pid, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """The processes started by ``pid``, at any depth (read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rpartition(")")[2].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to ``pid``'s process group, or to ``pid`` when it leads none."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


class PageRun:
    """The state of one page being run: its folder, its Python session, its servers."""

    def __init__(self, page: str, folder: Path, logs: Path) -> None:
        self.page, self.folder, self.logs = page, folder, logs
        self.env = page_env()
        self.session: subprocess.Popen[bytes] | None = None
        self.background: list[Background] = []
        self._serial = 0
        self.files: dict[str, str] = {}

    def run_source(self, source: str) -> None:
        """Run every block of the page's Markdown ``source``, then stop what it started."""
        blocks = parse_blocks(self.page, source)
        kinds = [(block, classify(block)) for block in blocks]  # refuse before running
        try:
            for block, kind in kinds:
                self.run_block(block, kind)
        finally:
            self.close()
        self.check_background()

    def run_block(self, block: Block, kind: str) -> None:
        """Run one block according to its kind (see ``pages.classify``)."""
        if kind == "file":
            assert block.title is not None
            target = self.folder / block.title
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.text)
            self.files[block.title] = block.text
        elif kind in ("python", "doctest"):
            self.run_python(block, kind)
        elif kind == "console":
            for command in parse_console(block):
                self.run_command(block, command)

    # -- python --------------------------------------------------------------

    def run_python(self, block: Block, kind: str) -> None:
        """Send a block to the page's Python session and check what it printed."""
        answer = self._ask(
            {"kind": kind, "source": block.text, "name": block.page, "line": block.line + 1}
        )
        if not answer["ok"]:
            raise PageError(
                f"{block.where}: the block failed:\n{answer['stdout']}{answer['error']}"
            )
        if block.output is not None and not matches(block.output.text, answer["stdout"]):
            raise PageError(
                f"{block.where}: the block printed\n{answer['stdout']}\n"
                f"but {block.output.where} shows\n{block.output.text}"
            )

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        session = self._session()
        assert session.stdin is not None and session.stdout is not None
        session.stdin.write((json.dumps(request) + "\n").encode())
        session.stdin.flush()
        line = _read_line(session.stdout, STEP_TIMEOUT)
        if line is None:
            where = f"{self.page}:{request['line'] - 1}"
            _signal_group(session.pid, signal.SIGKILL)  # hung: nothing to save
            session.wait(STOP_GRACE[1])
            raise PageError(
                f"{where}: the block did not finish within {STEP_TIMEOUT:.0f} s"
                + self._session_log()
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _session(self) -> subprocess.Popen[bytes]:
        if self.session is None:
            self.session = subprocess.Popen(
                [sys.executable, str(SESSION)],
                cwd=self.folder,
                env=self.env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=(self.logs / "session.log").open("wb"),
                start_new_session=True,
            )
        return self.session

    def _session_log(self) -> str:
        log = self.logs / "session.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return f"\nthe session's stderr:\n{text}" if text else ""

    # -- console ---------------------------------------------------------------

    def run_command(self, block: Block, command: Command) -> None:
        """Run one ``$ `` command, in the background when it ends with `` &``."""
        where = f"{block.page}:{command.line}"
        if command.background:
            self.start_background(where, command)
            return
        log = self._log_file()
        with log.open("wb") as out:
            process = self._spawn(command.text, out)
            try:
                status = process.wait(STEP_TIMEOUT)
            except subprocess.TimeoutExpired:
                stop_group(process)
                raise PageError(
                    f"{where}: {command.text!r} did not finish within {STEP_TIMEOUT:.0f} s"
                ) from None
        output = log.read_text(errors="replace")
        check_output(where, command, output, status)

    def start_background(self, where: str, command: Command) -> None:
        """Start a server command and wait until it accepts connections."""
        port = command_port(command.text)
        for likely in likely_ports(command.text, self.files):
            self.stop_serving_on(likely)
            wait_until_free(where, likely)
        log = self._log_file()
        process = self._spawn(command.text[:-2], log.open("wb"))
        job = Background(command, where, process, log)
        self.background.append(job)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._serving(job, port):
            if process.poll() is not None:
                raise PageError(f"{where}: {command.text!r} exited:\n{_text(log)}")
            if time.monotonic() > deadline:
                raise PageError(
                    f"{where}: {command.text!r} did not accept connections "
                    f"on port {port or 'any'} within {START_TIMEOUT:.0f} s:\n{_text(log)}"
                )
            time.sleep(0.1)

    @staticmethod
    def _serving(job: Background, port: int | None) -> bool:
        job.ports = listening_ports(job.process.pid)
        if port is None:
            return bool(job.ports)
        return port in job.ports and port_open(port)

    def stop_serving_on(self, port: int) -> None:
        """Stop this page's background commands on ``port``, as a reader would press Ctrl-C."""
        for job in self.background:
            if port in job.ports and job.process.poll() is None:
                stop_group(job.process)

    def check_background(self) -> None:
        """Compare what each stopped background command printed with the page."""
        for job in self.background:
            output = job.log.read_text(errors="replace")
            if job.command.expected.strip() and not matches(job.command.expected, output):
                raise PageError(_mismatch(job.where, job.command, output))

    def _spawn(self, text: str, out: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            ["bash", "-c", text],
            cwd=self.folder,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _log_file(self) -> Path:
        self._serial += 1
        return self.logs / f"command-{self._serial}.log"

    # -- the end -------------------------------------------------------------

    def close(self) -> None:
        """Stop the Python session, then every background command."""
        if self.session is not None:
            assert self.session.stdin is not None
            self.session.stdin.close()
            try:
                self.session.wait(STOP_GRACE[1])
            except subprocess.TimeoutExpired:
                stop_group(self.session)
        for job in reversed(self.background):
            stop_group(job.process)


def check_output(where: str, command: Command, output: str, status: int) -> None:
    """Fail unless the command printed what the page shows, or exited 0 when none is shown."""
    if command.expected.strip():
        if not matches(command.expected, output):
            raise PageError(_mismatch(where, command, output))
    elif status != 0:
        raise PageError(f"{where}: {command.text!r} exited with status {status}:\n{output}")


def _text(log: Path) -> str:
    return log.read_text(errors="replace")


def _mismatch(where: str, command: Command, output: str) -> str:
    return f"{where}: {command.text!r} printed\n{output}\nbut the page shows\n{command.expected}"


def _read_line(stream: IO[bytes], timeout: float) -> str | None:
    """Read one line from a pipe within ``timeout`` seconds; None when it does not come."""
    fd = stream.fileno()
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    return data.decode()
