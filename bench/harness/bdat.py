"""CHUNKING: messages sent by BDAT next to the same messages sent by DATA, on smtpkit.

Only smtpkit takes part: aiosmtpd has no CHUNKING. Two measurements per loop:

* throughput: ``clients/bdat.py`` (``pipelined_processes`` x ``pipelined_connections``
  sessions, ``MAIL``, ``RCPT`` and ``BDAT <n> LAST`` with the message in one write) and the
  pipelined DATA client, ``pipelined_messages`` 1 KiB messages each, against one server
  with the ``sink`` handler, in turn;
* one big message (``big_size``) by BDAT in 1 MiB chunks and by DATA, each into a fresh
  server with the ``spool`` handler (``handle_DATA_CHUNK`` writes to a file): seconds from
  the first byte to the final ``250``, and the server's peak RSS.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from statistics import median
from typing import Any

from . import bigmsg, paths, pipelined, procs
from .context import Context, Variant
from .progress import say
from .servers import Server

WARMUP_MESSAGES = 400


def _clients(ctx: Context, port: int, messages: int) -> float | None:
    """Messages per second of the BDAT clients, all started together; None on failure."""
    count = ctx.settings.pipelined_processes
    share = max(1, messages // count)
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "bdat.py"),
        f"--port={port}",
        f"--messages={share}",
        f"--connections={ctx.settings.pipelined_connections}",
        f"--size={ctx.settings.message_size}",
    ]
    clients: list[procs.Popen] = []
    try:
        for _ in range(count):
            clients.append(
                procs.spawn(argv, cpu=ctx.client_cpu, log=ctx.log, stdin=subprocess.PIPE)
            )
        for client in clients:
            procs.read_json(client, 60.0, "BDAT client")
        for client in clients:
            assert client.stdin is not None
            client.stdin.write(b"go\n")
            client.stdin.flush()
        results = [procs.read_json(c, 60.0 + share / 100.0, "BDAT client") for c in clients]
    except procs.ChildError as exc:
        ctx.log.write(f"BDAT client: {exc}\n".encode())
        return None
    finally:
        for client in clients:
            procs.stop(client)
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    done = sum(int(r["done"]) for r in results)
    return done / seconds if seconds > 0 else None


def _big_by_bdat(ctx: Context, server: Server) -> dict[str, Any]:
    argv = [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "bdat.py"),
        f"--port={server.port}",
        f"--size={ctx.settings.big_size}",
        "--big",
    ]
    result = procs.run_json(
        argv, cpu=ctx.client_cpu, log=ctx.log, timeout=300.0, what="BDAT big-message client"
    )
    return {
        "seconds": float(result["seconds"]),
        "bytes": int(result["bytes"]),
        "peak_rss_kib": server.peak_rss_kib(),
    }


def _big(ctx: Context, variant: Variant, how: str) -> dict[str, Any] | None:
    """One big message by ``how`` ("bdat" or "data") into a fresh spool server."""
    try:
        with Server(variant, ctx) as server:
            if how == "bdat":
                return _big_by_bdat(ctx, server)
            return bigmsg.measure(ctx, server)
    except procs.ChildError as exc:
        ctx.log.write(f"BDAT big message ({how}): {exc}\n".encode())
        return None


def _variants(ctx: Context, handler: str) -> list[Variant]:
    return [Variant("smtpkit", loop, handler) for loop in ctx.loops if "smtpkit" in ctx.servers]


def run(ctx: Context) -> dict[str, Any]:
    """Measure BDAT and DATA on every loop, ``rounds`` times, interleaved.

    Returns:
        ``{"throughput": {loop: {"bdat": [rate...], "data": [rate...]}},
        "big": {loop: {"bdat": [row...], "data": [row...]}}}``.
    """
    rates: dict[str, dict[str, list[float | None]]] = {}
    bigs: dict[str, dict[str, list[dict[str, Any] | None]]] = {}
    messages = ctx.settings.pipelined_messages
    with ExitStack() as stack:
        servers = {v.loop: stack.enter_context(Server(v, ctx)) for v in _variants(ctx, "sink")}
        for server in servers.values():
            _clients(ctx, server.port, WARMUP_MESSAGES)
        for round_no in range(1, ctx.settings.rounds + 1):
            for loop, server in servers.items():
                for how in ("bdat", "data"):
                    if how == "bdat":
                        rate = _clients(ctx, server.port, messages)
                    else:
                        rate = pipelined.send(ctx, server.port, messages)
                    rates.setdefault(loop, {}).setdefault(how, []).append(rate)
                    pipelined.report("bdat", ctx, round_no, f"smtpkit/{loop} {how}", rate)
    for round_no in range(1, ctx.settings.rounds + 1):
        for variant in _variants(ctx, "spool"):
            for how in ("bdat", "data"):
                row = _big(ctx, variant, how)
                bigs.setdefault(variant.loop, {}).setdefault(how, []).append(row)
                shown = "failed" if row is None else f"{row['seconds']:.2f} s"
                say("bdat", f"round {round_no} big {variant.loop} {how}: {shown}")
    return {"throughput": rates, "big": bigs}


def _mid(values: list[Any]) -> float | None:
    found = [v for v in values if v is not None]
    return median(found) if found else None


def _shown(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def render(results: dict[str, Any], big_mib: float) -> str:
    """Two Markdown tables: 1 KiB messages per second, and the big message."""
    lines = [
        "| loop | BDAT (msg/s) | DATA (msg/s) | BDAT ÷ DATA |",
        "| --- | --- | --- | --- |",
    ]
    for loop, hows in results["throughput"].items():
        by_bdat, by_data = _mid(hows.get("bdat", [])), _mid(hows.get("data", []))
        ratio = by_bdat / by_data if by_bdat and by_data else None
        lines.append(f"| {loop} | {_shown(by_bdat)} | {_shown(by_data)} | {_shown(ratio, 2)} |")
    lines += [
        "",
        f"| loop | {big_mib:g} MiB by | seconds | peak RSS (MiB) |",
        "| --- | --- | --- | --- |",
    ]
    for loop, hows in results["big"].items():
        for how, rows in hows.items():
            seconds = _mid([r["seconds"] for r in rows if r is not None])
            rss = _mid([r["peak_rss_kib"] / 1024 for r in rows if r is not None])
            lines.append(f"| {loop} | {how.upper()} | {_shown(seconds, 2)} | {_shown(rss, 1)} |")
    return "\n".join(lines)
