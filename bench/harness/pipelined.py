"""Pipelined clients: the load that real mail servers send, against every server.

``clients/pipelined.py`` writes ``MAIL``, ``RCPT`` and ``DATA`` at once, and the message,
its end and the next envelope at once: one round trip per message (smtp-source needs four).
Several client processes (``pipelined_processes`` x ``pipelined_connections`` sessions,
connections reused) start together on a signal; the rate is all their messages over the
time from the first start to the last end. The servers stay up for the whole section and
each round measures every server in turn.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from typing import Any

from . import paths, procs
from .context import Context, Variant
from .progress import say
from .servers import Server

WARMUP_MESSAGES = 400


def _argv(ctx: Context, port: int, messages: int, extra: list[str]) -> list[str]:
    return [
        paths.project_python(),
        str(paths.CLIENTS_DIR / "pipelined.py"),
        f"--port={port}",
        f"--messages={messages}",
        f"--connections={ctx.settings.pipelined_connections}",
        f"--size={ctx.settings.message_size}",
        f"--max-seconds={_timeout(messages):.0f}",
        *extra,
    ]


def _timeout(messages: int) -> float:
    # Generous: even 100 messages per second must finish.
    return 30.0 + messages / 100.0


def _collect(clients: list[procs.Popen], messages: int) -> list[dict[str, Any]]:
    for client in clients:
        procs.read_json(client, 60.0, "pipelined client")
    for client in clients:
        assert client.stdin is not None
        client.stdin.write(b"go\n")
        client.stdin.flush()
    return [procs.read_json(c, _timeout(messages) + 10, "pipelined client") for c in clients]


def send(ctx: Context, port: int, messages: int, extra: tuple[str, ...] = ()) -> float | None:
    """Send ``messages`` messages (or TLS sessions) from all client processes at once.

    Args:
        ctx: The run.
        port: The server's port on 127.0.0.1.
        messages: The total, split evenly between the processes.
        extra: More client options (``--starttls CA``, ``--handshakes``).

    Returns:
        Messages (or sessions) per second, or None if a client failed (logged).
    """
    count = ctx.settings.pipelined_processes
    share = max(1, messages // count)
    clients = []
    try:
        for _ in range(count):
            argv = _argv(ctx, port, share, list(extra))
            clients.append(
                procs.spawn(argv, cpu=ctx.client_cpu, log=ctx.log, stdin=subprocess.PIPE)
            )
        results = _collect(clients, share)
    except procs.ChildError as exc:
        ctx.log.write(f"pipelined client: {exc}\n".encode())
        return None
    finally:
        for client in clients:
            procs.stop(client)
    seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
    done = sum(int(r["done"]) for r in results)
    return done / seconds if seconds > 0 else None


def report(section: str, ctx: Context, round_no: int, what: str, rate: float | None) -> None:
    """Say one measurement's rate on stderr (``what``: the load and the server)."""
    shown = "failed (see the log)" if rate is None else f"{rate:,.0f} per second"
    say(section, f"round {round_no}/{ctx.settings.rounds} {what}: {shown}")


def run(ctx: Context) -> dict[str, list[float | None]]:
    """Measure every server (the ceiling too), ``rounds`` times, interleaved.

    Returns:
        ``{label: [messages per second per round, None where it failed]}``.
    """
    results: dict[str, list[float | None]] = {}
    with ExitStack() as stack:
        servers: dict[Variant, Server] = {}
        for variant in ctx.throughput_variants():
            servers[variant] = stack.enter_context(Server(variant, ctx))
            send(ctx, servers[variant].port, WARMUP_MESSAGES)
        for round_no in range(1, ctx.settings.rounds + 1):
            for variant, server in servers.items():
                rate = send(ctx, server.port, ctx.settings.pipelined_messages)
                results.setdefault(variant.label, []).append(rate)
                report("pipelined", ctx, round_no, variant.label, rate)
    return results
