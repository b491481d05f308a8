"""Stall: latency of small messages on one connection while big uploads run.

Ten clients each send 20 MiB messages back to back; once all of them are sending, a probe
session sends 1 KiB messages one after another and times each (MAIL to the final 250).
Uploads and probe run in separate processes, so neither client delays the other.
"""

from __future__ import annotations

import subprocess
from typing import Any

from . import paths, procs
from .context import Context
from .rounds import measure_rounds
from .servers import Server
from .stats import percentile


def _uploads(ctx: Context, port: int) -> procs.Popen:
    settings = ctx.settings
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "stall.py"),
        "upload",
        f"--port={port}",
        f"--connections={settings.stall_uploaders}",
        f"--size={settings.stall_upload_size}",
        "--max-seconds=180",
    ]
    return procs.spawn(argv, cpu=ctx.client_cpu, log=ctx.log, stdin=subprocess.PIPE)


def _probe(ctx: Context, port: int) -> list[float]:
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "stall.py"),
        "probe",
        f"--port={port}",
        f"--messages={ctx.settings.stall_probes}",
        f"--size={ctx.settings.message_size}",
        f"--max-seconds={ctx.settings.stall_probe_seconds}",
    ]
    timeout = ctx.settings.stall_probe_seconds + 60
    result = procs.run_json(argv, cpu=ctx.client_cpu, log=ctx.log, timeout=timeout, what="probe")
    return [float(value) for value in result["latencies_ms"]]


def measure(ctx: Context, server: Server) -> dict[str, Any]:
    """Run the uploads and the probe against ``server``; return latency figures in ms."""
    uploads = _uploads(ctx, server.port)
    try:
        started = procs.read_json(uploads, 120.0, "uploads")
        if started.get("error"):
            raise procs.ChildError(f"uploads: {started['error']}")
        latencies = _probe(ctx, server.port)
        assert uploads.stdin is not None
        uploads.stdin.write(b"stop\n")
        uploads.stdin.flush()
        done = procs.read_json(uploads, 60.0, "uploads")
    finally:
        procs.stop(uploads)
    if not latencies:
        raise procs.ChildError("probe: no message went through")
    return {
        "probes": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies),
        "uploads_done": int(done["messages"]),
        "upload_error": done.get("error", ""),
    }


def run(ctx: Context) -> dict[str, list[dict[str, Any] | None]]:
    """Measure every server ``rounds`` times, interleaved (see :func:`measure_rounds`)."""
    return measure_rounds(ctx, "stall", ctx.variants(), measure, _show)


def _show(row: dict[str, Any] | None) -> str:
    if row is None:
        return "failed (see the log)"
    return (
        f"p50 {row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms over {row['probes']} messages"
        f" ({row['uploads_done']} uploads done)"
    )
