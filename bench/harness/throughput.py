"""Throughput: Postfix's smtp-source, 20 sessions of 1 KiB messages, against each server.

Two modes: reusing each connection for many messages (smtp-source -d), and one message
per connection (smtp-source's default: it disconnects after each message). The servers
stay up for the whole section; each round measures every server in turn (A B C A B C ...).
"""

from __future__ import annotations

import subprocess
import time
from contextlib import ExitStack

from . import procs
from .context import Context, Variant
from .progress import say
from .servers import Server

MODES = ("reuse", "disconnect")
WARMUP_MESSAGES = 200


def smtp_source_argv(ctx: Context, port: int, messages: int, reuse: bool) -> list[str]:
    """The smtp-source command for ``messages`` messages to 127.0.0.1:``port``."""
    settings = ctx.settings
    argv = [ctx.smtp_source, "-s", str(settings.sessions), "-l", str(settings.message_size)]
    argv += ["-m", str(messages), "-M", "bench.local"]
    argv += ["-f", "source@bench.local", "-t", "sink@bench.local"]
    if reuse:
        argv.append("-d")
    return [*argv, f"127.0.0.1:{port}"]


def _timeout(messages: int) -> float:
    # Generous: even 100 messages per second must finish.
    return 30.0 + messages / 100.0


def send(ctx: Context, port: int, messages: int, reuse: bool) -> float | None:
    """Run smtp-source once; return messages per second, or None if it failed."""
    argv = smtp_source_argv(ctx, port, messages, reuse)
    start = time.perf_counter()
    try:
        result = subprocess.run(
            argv,
            capture_output=True,
            timeout=_timeout(messages),
            preexec_fn=procs.child_setup(ctx.client_cpu),
            check=False,
        )
    except subprocess.TimeoutExpired:
        ctx.log.write(f"smtp-source: no end after {_timeout(messages):.0f} s\n".encode())
        return None
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        ctx.log.write(b"smtp-source failed: " + result.stderr[-2000:] + b"\n")
        return None
    return messages / seconds


def run(ctx: Context) -> dict[str, dict[str, list[float | None]]]:
    """Measure every server in both modes, ``rounds`` times, interleaved.

    Returns:
        ``{mode: {label: [messages per second per round, None where it failed]}}``.
    """
    variants = ctx.throughput_variants()
    results: dict[str, dict[str, list[float | None]]] = {m: {} for m in MODES}
    with ExitStack() as stack:
        servers: dict[Variant, Server] = {}
        for variant in variants:
            servers[variant] = stack.enter_context(Server(variant, ctx))
            send(ctx, servers[variant].port, WARMUP_MESSAGES, reuse=True)
        for round_no in range(1, ctx.settings.rounds + 1):
            for mode in MODES:
                _round(ctx, servers, mode, round_no, results[mode])
    return results


def _round(
    ctx: Context,
    servers: dict[Variant, Server],
    mode: str,
    round_no: int,
    results: dict[str, list[float | None]],
) -> None:
    reuse = mode == "reuse"
    settings = ctx.settings
    messages = settings.reuse_messages if reuse else settings.disconnect_messages
    for variant, server in servers.items():
        rate = send(ctx, server.port, messages, reuse)
        results.setdefault(variant.label, []).append(rate)
        shown = "failed (see the log)" if rate is None else f"{rate:,.0f} msg/s"
        say("throughput", f"round {round_no}/{settings.rounds} {mode:10} {variant.label}: {shown}")
