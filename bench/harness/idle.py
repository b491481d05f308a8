"""Idle sessions: memory per session with thousands of clients that said EHLO and wait.

One client process opens the sessions on raw sockets from several loopback source
addresses (127.0.0.2, 127.0.0.3, ...) so that ports never run out. Memory per session is
(VmRSS with all sessions held - VmRSS before) / sessions held, on a fresh server warmed up
by a few sessions first.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from . import paths, procs
from .context import Context
from .rounds import measure_rounds
from .servers import Server

WARMUP_SESSIONS = 50
SETTLE_SECONDS = 1.0
#: About 1,900 sessions per source address for 15,000 sessions.
SOURCE_ADDRESSES = 8


def _client(ctx: Context, port: int, count: int) -> procs.Popen:
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "idle.py"),
        f"--port={port}",
        f"--count={count}",
        f"--sources={SOURCE_ADDRESSES}",
    ]
    return procs.spawn(argv, cpu=ctx.client_cpu, log=ctx.log, stdin=subprocess.PIPE)


def hold(
    ctx: Context, port: int, count: int, on_held: Callable[[], int] | None = None
) -> dict[str, Any]:
    """Open ``count`` sessions, call ``on_held()`` while they are held, then close them.

    Returns:
        The client's report, plus ``on_held``'s result under "measured".
    """
    client = _client(ctx, port, count)
    try:
        report = procs.read_json(client, 240.0, "idle client")
        time.sleep(SETTLE_SECONDS)
        report["measured"] = on_held() if on_held is not None else None
        assert client.stdin is not None
        client.stdin.close()
        procs.wait_exit(client, 60.0, "idle client")
        return report
    finally:
        procs.stop(client)


def measure(ctx: Context, server: Server) -> dict[str, Any]:
    """Warm ``server`` up, then hold the configured number of sessions and read its RSS."""
    hold(ctx, server.port, WARMUP_SESSIONS)
    time.sleep(SETTLE_SECONDS)
    before = server.rss_kib()
    report = hold(ctx, server.port, ctx.settings.idle_sessions, server.rss_kib)
    held = int(report["held"])
    after = int(report["measured"])
    return {
        "held": held,
        "failed": int(report["failed"]),
        "first_error": report.get("first_error", ""),
        "open_seconds": float(report["seconds"]),
        "before_kib": before,
        "after_kib": after,
        "kib_per_session": (after - before) / held if held else None,
    }


def run(ctx: Context) -> dict[str, list[dict[str, Any] | None]]:
    """Measure every server ``rounds`` times, interleaved (see :func:`measure_rounds`)."""
    return measure_rounds(ctx, "idle", ctx.variants(), measure, _show)


def _show(row: dict[str, Any] | None) -> str:
    if row is None or row["kib_per_session"] is None:
        return "failed (see the log)"
    failed = f", {row['failed']} failed: {row['first_error']}" if row["failed"] else ""
    return f"{row['held']} held, {row['kib_per_session']:.2f} KiB/session{failed}"
