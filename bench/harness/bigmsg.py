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
from .progress import say
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
    """Measure every server and handler ``rounds`` times, interleaved.

    Returns:
        ``{label: [measurement per round, None where it failed]}``.
    """
    results: dict[str, list[dict[str, Any] | None]] = {}
    for round_no in range(1, ctx.settings.rounds + 1):
        for variant in ctx.variants(HANDLERS):
            try:
                with Server(variant, ctx) as server:
                    row: dict[str, Any] | None = measure(ctx, server)
            except procs.ChildError as exc:
                ctx.log.write(f"bigmsg {variant.label}: {exc}\n".encode())
                row = None
            results.setdefault(variant.label, []).append(row)
            shown = (
                "failed (see the log)"
                if row is None
                else f"{row['seconds']:.2f} s, peak RSS {row['peak_rss_kib'] / 1024:.1f} MiB"
            )
            say("bigmsg", f"round {round_no}/{ctx.settings.rounds} {variant.label}: {shown}")
    return results
