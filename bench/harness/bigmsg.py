"""One big message: seconds to accept it, and the server's peak resident memory.

Each measurement starts a fresh server, so that its VmHWM (peak RSS since start) belongs to
that one message. smtpkit runs twice: with the classic handler that reads
``envelope.content``, and with one that streams chunks to a spool file
(``handle_DATA_CHUNK``). aiosmtpd runs with the classic handler; smtp-sink, which discards
what it reads, is the floor.
"""

from __future__ import annotations

from typing import Any

from . import paths, procs
from .context import Context
from .rounds import measure_rounds
from .servers import Server

HANDLERS = ("content", "spool")


def measure(ctx: Context, server: Server) -> dict[str, Any]:
    """Send one message to ``server``; return seconds and memory figures in KiB."""
    base = server.rss_kib()
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "bigmsg.py"),
        f"--port={server.port}",
        f"--size={ctx.settings.big_size}",
    ]
    result = procs.run_json(
        argv, cpu=ctx.client_cpu, log=ctx.log, timeout=300.0, what="big-message client"
    )
    return {
        "seconds": float(result["seconds"]),
        "bytes": int(result["bytes"]),
        "base_rss_kib": base,
        "peak_rss_kib": server.peak_rss_kib(),
    }


def run(ctx: Context) -> dict[str, list[dict[str, Any] | None]]:
    """Measure every server and handler ``rounds`` times, interleaved."""
    return measure_rounds(ctx, "bigmsg", ctx.variants(HANDLERS), measure, _show)


def _show(row: dict[str, Any] | None) -> str:
    if row is None:
        return "failed (see the log)"
    return f"{row['seconds']:.2f} s, peak RSS {row['peak_rss_kib'] / 1024:.1f} MiB"
