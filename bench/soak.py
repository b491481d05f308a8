#!/usr/bin/env python3
"""Soak ``smtpkit run`` with a mix of clients for as long as asked, then check the Maildir.

    python bench/soak.py --minutes 10              # the embedded default, one process
    python bench/soak.py --minutes 60 --workers 2  # the same with two worker processes

The mix, all on 127.0.0.1 against one ``smtpkit run`` started in a temporary folder:

* normal senders: aiosmtplib sessions of 10 messages, each with its own Message-ID;
* disconnecters: raw sockets that stop in the middle of DATA and reset (RST) or close;
* malformed input: random bytes, bare CR/LF, NUL, huge lines, invalid UTF-8;
* slow clients: whole messages sent a few bytes at a time;
* a probe: one message on a fresh connection every 0.2 s, timed from connect to ``250``
  (the clients share the machine with the server: on 2 cores their own CPU time shows
  in the probe's figures too).

Every ``--report`` seconds it prints messages per second, the probe's p50/p99 and the
server's resident memory; at the end, the loss count: acknowledged messages missing
from ``new/``, stored twice or changed, and partial messages found in ``new/``. Exit
status 0 when nothing was lost. It stops by itself (and stops the server) after
``--minutes``, or on Ctrl-C. Not part of the test suite (see docs/reliability.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiosmtplib

HOST = "127.0.0.1"
#: Seconds any one client step may take before the soak counts it as a failure.
STEP_TIMEOUT = 60.0
LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
MESSAGE_ID = re.compile(rb"^Message-ID: <([^>]+)>$", re.MULTILINE)
#: What a raw client may run into (asyncio's TimeoutError is no OSError before 3.11).
FAILURES = (OSError, asyncio.TimeoutError)
#: Sizes of the normal senders' messages: mostly small, one in 20 spans two disk writes.
SIZES = [300, 1000, 2000, 5000, 30_000] * 4 + [400_000]
#: Source addresses per role: the server allows 50 connections per client address.
SOURCES = {"normal": "127.0.0.2", "cut": "127.0.0.3", "bad": "127.0.0.4", "slow": "127.0.0.5"}


@dataclass
class Tally:
    """What the clients saw."""

    acked: dict[str, bytes] = field(default_factory=dict)
    cut: int = 0
    malformed: int = 0
    slow: int = 0
    probe_ms: list[float] = field(default_factory=list)
    probe_failures: int = 0
    client_errors: int = 0
    rss_mib: list[tuple[float, float]] = field(default_factory=list)


def message(message_id: str, size: int) -> bytes:
    """A message of about ``size`` bytes with dot-leading and non-ASCII lines."""
    line = f".{message_id} Grüße and some filler text to make a line".encode()
    body = b"\r\n".join(line for _ in range(max(size // len(line), 1)))
    head = f"Message-ID: <{message_id}>\r\nSubject: soak {message_id}\r\n\r\n".encode()
    return head + body + b"\r\n"


def dot_stuffed(data: bytes) -> bytes:
    return re.sub(rb"(?m)^\.", b"..", data)


# -- the server ------------------------------------------------------------------------------


def start_server(folder: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    """``smtpkit run`` in ``folder``; the process and its port (read from its log)."""
    command = [sys.executable, "-m", "smtpkit", "run", "--port", "0", "--maildir", "mail"]
    if workers > 1:
        command += ["--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPKIT_")}
    env["SMTPKIT_LIMITS__MAX_CONNECTIONS_PER_IP"] = "200"
    log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        command,
        cwd=folder,
        env=env,
        stdout=open(folder / "stdout.log", "wb"),  # noqa: SIM115
        stderr=log,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = LISTENING.search((folder / "server.log").read_bytes())
        if found:
            return process, int(found.group(1))
        if process.poll() is not None:
            raise SystemExit(f"smtpkit run exited: see {folder / 'server.log'}")
        time.sleep(0.1)
    process.kill()
    raise SystemExit("smtpkit run did not start listening within 60 s")


def stop_server(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then SIGKILL after 60 s; the exit status."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def rss_mib(pid: int) -> float:
    """VmRSS of ``pid`` and its children (the workers), in MiB."""
    total = 0
    pids = [pid]
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
            pids += [int(child) for child in children]
    for one in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{one}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


# -- the clients -----------------------------------------------------------------------------


async def normal_sender(port: int, name: str, tally: Tally, until: float) -> None:
    """Sessions of 10 messages until ``until``."""
    session = 0
    while time.monotonic() < until:
        session += 1
        client = aiosmtplib.SMTP(
            hostname=HOST, port=port, timeout=STEP_TIMEOUT, source_address=(SOURCES["normal"], 0)
        )
        try:
            async with client:
                for number in range(10):
                    message_id = f"{name}-{session}-{number}@soak"
                    data = message(message_id, random.choice(SIZES))
                    await client.sendmail("a@soak.example", ["b@soak.example"], data)
                    tally.acked[message_id] = data
        except (aiosmtplib.SMTPException, OSError):
            tally.client_errors += 1


async def raw_dialog(port: int, role: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(HOST, port, local_addr=(SOURCES[role], 0)), STEP_TIMEOUT
    )
    await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
    return reader, writer


async def expect(reader: asyncio.StreamReader, code: bytes) -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), STEP_TIMEOUT)
        if not line.startswith(code):
            raise OSError(f"expected {code!r}, got {line!r}")
        if line[3:4] != b"-":
            return


async def start_data(port: int, role: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await raw_dialog(port, role)
    for command, code in (
        (b"EHLO soak.example", b"250"),
        (b"MAIL FROM:<a@soak.example>", b"250"),
        (b"RCPT TO:<b@soak.example>", b"250"),
        (b"DATA", b"354"),
    ):
        writer.write(command + b"\r\n")
        await expect(reader, code)
    return reader, writer


async def disconnecter(port: int, tally: Tally, until: float) -> None:
    """Transfers cut off mid-DATA, by RST or by FIN."""
    number = 0
    while time.monotonic() < until:
        number += 1
        try:
            _, writer = await start_data(port, "cut")
            partial = message(f"partial-{number}@soak", 600_000)
            writer.write(dot_stuffed(partial)[: random.randint(1, 500_000)])
            await writer.drain()
            await asyncio.sleep(random.random() * 0.2)
            if number % 2:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.close()
            tally.cut += 1
        except FAILURES:
            tally.client_errors += 1


BAD = [
    b"\x00\x01\x02 random \xff\xfe\r\n",
    b"EHLO " + b"x" * 200_000 + b"\r\n",
    b"MAIL FROM:<\xc3(@x> SMTPUTF8\r\nRCPT TO:<\x00>\r\n",
    b"HELO a\rMAIL FROM:<a@b>\nRCPT TO:<c@d>\r\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    b"PROXY TCP4 192.0.2.1 192.0.2.2 1 2\r\n",
    b"AUTH PLAIN !!!!\r\nAUTH LOGIN\r\n\xff\xff\r\n",
    b"BDAT 99999999999 LAST\r\nzz",
]


async def malformed(port: int, tally: Tally, until: float) -> None:
    """Sessions of garbage; the server must answer and carry on."""
    while time.monotonic() < until:
        try:
            reader, writer = await raw_dialog(port, "bad")
            writer.write(random.choice(BAD) + os.urandom(random.randint(0, 2000)))
            writer.write_eof()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(reader.read(), 5)
            writer.close()
            tally.malformed += 1
        except FAILURES:
            tally.client_errors += 1


async def slow_client(port: int, name: str, tally: Tally, until: float) -> None:
    """Whole messages sent 20 bytes every 50 ms."""
    number = 0
    while time.monotonic() < until:
        number += 1
        message_id = f"{name}-{number}@soak"
        data = message(message_id, 1500)
        try:
            reader, writer = await start_data(port, "slow")
            wire = dot_stuffed(data) + b".\r\n"
            for start in range(0, len(wire), 20):
                writer.write(wire[start : start + 20])
                await asyncio.sleep(0.05)
            await expect(reader, b"250")
            tally.acked[message_id] = data
            tally.slow += 1
            writer.close()
        except FAILURES:
            tally.client_errors += 1


async def probe(port: int, tally: Tally, until: float) -> None:
    """One message on a fresh connection every 0.2 s, timed from connect to 250."""
    number = 0
    while time.monotonic() < until:
        number += 1
        message_id = f"probe-{number}@soak"
        data = message(message_id, 500)
        started = time.perf_counter()
        try:
            client = aiosmtplib.SMTP(hostname=HOST, port=port, timeout=STEP_TIMEOUT)
            async with client:
                await client.sendmail("a@soak.example", ["b@soak.example"], data)
            tally.probe_ms.append((time.perf_counter() - started) * 1000)
            tally.acked[message_id] = data
        except (aiosmtplib.SMTPException, OSError):
            tally.probe_failures += 1
        await asyncio.sleep(0.2)


# -- reports and the final check -------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * fraction), len(ordered) - 1)]


async def reporter(pid: int, tally: Tally, started: float, until: float, every: float) -> None:
    last_count, last_time, last_probe = 0, started, 0
    while time.monotonic() < until:
        await asyncio.sleep(min(every, max(until - time.monotonic(), 0.1)))
        now = time.monotonic()
        rss = rss_mib(pid)
        tally.rss_mib.append((now - started, rss))
        probes = tally.probe_ms[last_probe:]
        rate = (len(tally.acked) - last_count) / (now - last_time)
        print(
            f"t={now - started:6.0f}s  {rate:7.1f} msg/s  probe p50={percentile(probes, 0.5):6.1f}"
            f" ms p99={percentile(probes, 0.99):6.1f} ms  rss={rss:6.1f} MiB  "
            f"cut={tally.cut} malformed={tally.malformed} slow={tally.slow} "
            f"errors={tally.client_errors}",
            flush=True,
        )
        last_count, last_time, last_probe = len(tally.acked), now, len(tally.probe_ms)


def stored(maildir: Path) -> dict[str, list[bytes]]:
    """Messages in new/ by Message-ID, as sent (envelope headers off, CRLF)."""
    found: dict[str, list[bytes]] = {}
    for path in (maildir / "new").iterdir():
        data = path.read_bytes().split(b"\n", 3)[3]  # X-Peer, X-MailFrom, X-RcptTo
        match = MESSAGE_ID.search(data)
        key = match.group(1).decode() if match else path.name
        found.setdefault(key, []).append(data.replace(b"\n", b"\r\n"))
    return found


def losses(tally: Tally, maildir: Path) -> dict[str, int]:
    on_disk = stored(maildir)
    return {
        "lost": sum(1 for key in tally.acked if key not in on_disk),
        "stored twice": sum(1 for key in tally.acked if len(on_disk.get(key, [])) > 1),
        "changed": sum(
            1 for key, data in tally.acked.items() if on_disk.get(key, [data])[0] != data
        ),
        "partial in new/": sum(1 for key in on_disk if key.startswith("partial-")),
    }


async def soak(port: int, pid: int, seconds: float, every: float) -> Tally:
    tally = Tally()
    started = time.monotonic()
    until = started + seconds
    tasks = [normal_sender(port, f"n{index}", tally, until) for index in range(8)]
    tasks += [disconnecter(port, tally, until) for _ in range(4)]
    tasks += [malformed(port, tally, until) for _ in range(4)]
    tasks += [slow_client(port, f"s{index}", tally, until) for index in range(4)]
    tasks += [probe(port, tally, until), reporter(pid, tally, started, until, every)]
    await asyncio.gather(*tasks)
    return tally


def summary(tally: Tally, seconds: float, lost: dict[str, int], status: int) -> None:
    rss = [value for _, value in tally.rss_mib]
    print(
        f"\n{len(tally.acked)} messages acknowledged in {seconds:.0f} s "
        f"({len(tally.acked) / seconds:.1f} msg/s); {tally.cut} transfers cut off, "
        f"{tally.malformed} malformed sessions, {tally.slow} slow messages"
    )
    print(
        f"probe: {len(tally.probe_ms)} messages, p50 {percentile(tally.probe_ms, 0.5):.1f} ms, "
        f"p99 {percentile(tally.probe_ms, 0.99):.1f} ms, max {max(tally.probe_ms, default=0):.1f}"
        f" ms, {tally.probe_failures} failed"
    )
    if rss:
        print(f"rss: first {rss[0]:.1f} MiB, max {max(rss):.1f} MiB, last {rss[-1]:.1f} MiB")
    print("loss: " + ", ".join(f"{name} {count}" for name, count in lost.items()))
    print(f"client errors: {tally.client_errors}; server exit status: {status}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, required=True, help="how long to soak")
    parser.add_argument("--workers", type=int, default=1, help="smtpkit run --workers")
    parser.add_argument("--report", type=float, default=None, help="seconds between reports")
    options = parser.parse_args()
    if options.minutes <= 0:
        parser.error(f"--minutes {options.minutes}: expected a positive number")
    seconds = options.minutes * 60
    every = options.report or min(60.0, max(seconds / 10, 5.0))
    with tempfile.TemporaryDirectory(prefix="smtpkit-soak-") as folder:
        process, port = start_server(Path(folder), options.workers)
        print(f"smtpkit run (pid {process.pid}) on port {port}; soaking for {seconds:.0f} s")
        try:
            tally = asyncio.run(soak(port, process.pid, seconds, every))
        except KeyboardInterrupt:
            stop_server(process)
            return 130
        status = stop_server(process)
        lost = losses(tally, Path(folder) / "mail")
        summary(tally, seconds, lost, status)
        print(f"server log: {len((Path(folder) / 'server.log').read_bytes())} bytes (removed)")
    return 0 if not any(lost.values()) and status == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
