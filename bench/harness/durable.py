"""Durable delivery: many concurrent sessions into a Maildir, messages per second.

smtpkit's ``Mailbox`` writes each message to ``tmp/``, fsyncs it, renames it into ``new/``
and fsyncs ``new/`` before the ``250``; aiosmtpd's ``Mailbox`` (``mailbox.Maildir.add``)
does not fsync. smtp-source sends 1 KiB messages over ``durable_sessions`` sessions,
reusing connections. Each measurement starts a fresh server with an empty Maildir, counts
the files it stored, and deletes the Maildir.

The Maildirs go to a temporary directory under ``bench/results/``, not under the system's
temporary directory, which is often a tmpfs where fsync costs nothing; the table names the
file system they were on.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import paths, procs, throughput
from .context import Context, Variant
from .rounds import measure_rounds
from .servers import Server


def _maildir(ctx: Context) -> Path:
    # Where the servers' mailbox handler stores (see servers/_common.py: maildir()).
    return Path(ctx.spool_dir) / "maildir"


def measure(ctx: Context, server: Server) -> dict[str, Any]:
    """Send the messages through ``server``; return the rate and the messages stored."""
    settings = dataclasses.replace(ctx.settings, sessions=ctx.settings.durable_sessions)
    load = dataclasses.replace(ctx, settings=settings)
    messages = ctx.settings.durable_messages
    try:
        rate = throughput.send(load, server.port, messages, reuse=True)
        new = _maildir(ctx) / "new"
        stored = sum(1 for _ in new.iterdir()) if new.is_dir() else 0
    finally:
        shutil.rmtree(_maildir(ctx), ignore_errors=True)
    if rate is None:
        raise procs.ChildError("smtp-source failed (see above)")
    return {"rate": rate, "messages": messages, "stored": stored, "filesystem": _fs_type(ctx)}


def _fs_type(ctx: Context) -> str:
    """The type of the file system holding the Maildirs (``ext2/ext3``, ``tmpfs``, ...)."""
    try:
        result = subprocess.run(
            ["stat", "-f", "-c", "%T", ctx.spool_dir],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"


def variants(ctx: Context) -> list[Variant]:
    """The Mailbox of smtpkit and of aiosmtpd, on each loop."""
    servers = [s for s in ("smtpkit", "aiosmtpd") if s in ctx.servers]
    return [Variant(server, loop, "mailbox") for loop in ctx.loops for server in servers]


def run(ctx: Context) -> dict[str, list[dict[str, Any] | None]]:
    """Measure every variant on a fresh server, ``rounds`` times, interleaved."""
    paths.RESULTS_DIR.mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(prefix="durable-", dir=paths.RESULTS_DIR)
    try:
        on_disk = dataclasses.replace(ctx, spool_dir=folder)
        return measure_rounds(on_disk, "durable", variants(ctx), measure, _show)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _show(row: dict[str, Any] | None) -> str:
    if row is None:
        return "failed (see the log)"
    return f"{row['rate']:,.0f} msg/s, {row['stored']:,} of {row['messages']:,} stored"
