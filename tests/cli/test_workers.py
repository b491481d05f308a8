"""``--workers N``: N processes on one port (SO_REUSEPORT), supervised, drained on SIGTERM."""

from __future__ import annotations

import re
import signal
import smtplib
import time
from pathlib import Path

import pytest

from .conftest import Start
from .helpers import HOST, READY, Command, maildir_messages
from .test_shutdown import finish_data, open_data, signalled

# Several processes start in each test: allow for a slow, loaded machine.
pytestmark = pytest.mark.timeout(180)

STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def start_workers(start: Start, *arguments: str) -> tuple[Command, int, dict[int, int]]:
    """Start two workers; wait until both listen. Returns the command, port and pids."""
    command = start("run", *arguments, "--workers", "2", "--port", "0")
    port = int(command.wait_for(r"2 workers serving .* on port (\d+) \(SO_REUSEPORT\)").group(1))
    pids = {int(m.group(1)): int(m.group(2)) for m in command.wait_for_all(STARTED, 2)}
    for pid in pids.values():
        command.wait_for(rf"\[{pid}\] INFO smtpkit.cli: listening on 127\.0\.0\.1:{port}$")
    return command, port, pids


def pid_of_new_connection(port: int) -> int:
    with smtplib.SMTP(HOST, port, timeout=READY) as client:
        code, reply = client.docmd("PID")
        assert code == 250
        return int(reply.removeprefix(b"2.0.0 "))  # after the enhanced status code


def pids_seen(port: int, wanted: set[int], tries: int = 400) -> set[int]:
    """Open connections until every pid in ``wanted`` answered (or ``tries`` ran out)."""
    seen: set[int] = set()
    for _ in range(tries):
        seen.add(pid_of_new_connection(port))
        if wanted <= seen:
            break
    return seen


def test_two_workers_share_the_port_and_stop_on_sigterm(start: Start, project: Path) -> None:
    command, port, pids = start_workers(start, "mailapp:app")
    assert command.pid not in pids.values()
    assert pids_seen(port, set(pids.values())) == set(pids.values())

    signalled(command)
    assert command.wait() == 0
    for index, pid in pids.items():
        command.wait_for(rf"worker {index} \(pid {pid}\) stopped")


def test_a_crashed_worker_is_restarted_with_a_backoff(start: Start, project: Path) -> None:
    command, port, pids = start_workers(start, "mailapp:app")
    client = smtplib.SMTP(HOST, port, timeout=READY)
    victim = int(client.docmd("PID")[1].removeprefix(b"2.0.0 "))
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.docmd("CRASH")
    client.close()
    index = next(i for i, pid in pids.items() if pid == victim)
    crashed = command.wait_for(
        rf"worker {index} \(pid {victim}\) exited with status 3 after [\d.]+ s; "
        r"restarting it in 0\.5 s"
    )
    assert crashed
    mark = command.lines["stderr"].index(crashed.string)
    replacement = int(
        command.wait_for(rf"worker {index} started \(pid (\d+)\)", start=mark).group(1)
    )
    command.wait_for(rf"\[{replacement}\] INFO smtpkit.cli: listening on ")
    survivors = {replacement, *(pid for pid in pids.values() if pid != victim)}
    assert pids_seen(port, survivors) == survivors


def test_sigterm_lets_a_transfer_finish_in_a_worker(start: Start, tmp_path: Path) -> None:
    command, port, pids = start_workers(start)
    client = open_data(port)
    signalled(command)
    command.wait_for(
        r"SIGTERM received: stopping 2 worker\(s\); each closes its idle sessions at once and "
        r"gives a command in progress up to 30 s to finish \(send it again to stop at once\)"
    )
    for pid in pids.values():
        command.wait_for(rf"\[{pid}\] INFO smtpkit.cli: SIGTERM received")
    assert finish_data(client) == (250, b"2.0.0 OK")
    assert command.wait() == 0
    (stored,) = maildir_messages(tmp_path / "smtpkit-mail")
    assert stored.endswith(b"The first half,\nand the second half.\n")
    client.close()


def test_a_second_signal_stops_the_workers_at_once(start: Start) -> None:
    command, port, pids = start_workers(start)
    client = open_data(port)
    signalled(command)
    command.send_signal(signal.SIGTERM)
    assert command.wait() == 128 + signal.SIGTERM
    command.wait_for("SIGTERM received again: killing the workers")
    deadline = time.monotonic() + READY
    while any(running(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(running(pid) for pid in pids.values())
    client.close()


def running(pid: int) -> bool:
    """Whether a process runs (a zombie, dead but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


WORKER_ONLY = """
import sys

from smtpkit import App

IN_A_WORKER = any(argument.startswith("--worker=") for argument in sys.argv)
{body}
"""


def test_workers_failing_at_start_are_restarted_ever_later(start: Start, tmp_path: Path) -> None:
    body = "app = App()\nif IN_A_WORKER:\n    raise RuntimeError('no database in workers')\n"
    (tmp_path / "flaky.py").write_text(WORKER_ONLY.format(body=body))
    command = start("run", "flaky", "--workers", "2", "--port", "0")
    delays = [
        float(found.group(1))
        for found in command.wait_for_all(
            r"worker 1 \(pid \d+\) exited with status 1 after "
            r"[\d.]+ s; restarting it in ([\d.]+) s",
            3,
        )
    ]
    assert delays == [0.5, 1.0, 2.0]
    command.wait_for("RuntimeError: no database in workers")
    signalled(command)
    # 0, or 1 when a worker failed once more while stopping.
    assert command.wait() in (0, 1)


def test_a_worker_with_a_configuration_error_stops_the_supervisor(
    start: Start, tmp_path: Path
) -> None:
    body = "if not IN_A_WORKER:\n    app = App()\n"
    (tmp_path / "moody.py").write_text(WORKER_ONLY.format(body=body))
    command = start("run", "moody", "--workers", "2", "--port", "0")
    assert command.wait() == 2
    command.wait_for(r"could not find an app in module 'moody'")
    command.wait_for(
        r"worker \d \(pid \d+\) could not start \(status 2: a configuration error, see above\); "
        r"restarting cannot help, so all workers stop"
    )
