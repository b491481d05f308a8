"""The App path: the same load through a small App, next to the bare SMTP class with Sink.

The App (``servers/app_server.py``) has one recipient route and one RCPT hook, both
``async def``; the bare server is ``smtpkit_server.py --handler sink``. Both take
smtp-source's load with connections reused, and the pipelining clients' load. The servers
stay up for the whole section and each round measures both in turn, per loop.
"""

from __future__ import annotations

from contextlib import ExitStack

from . import pipelined, throughput
from .context import Context, Variant
from .servers import Server

LOADS = ("smtp-source", "pipelined")


def _send(ctx: Context, load: str, port: int) -> float | None:
    if load == "smtp-source":
        return throughput.send(ctx, port, ctx.settings.reuse_messages, reuse=True)
    return pipelined.send(ctx, port, ctx.settings.pipelined_messages)


def variants(ctx: Context) -> list[Variant]:
    """smtpkit with Sink and smtpkit's App, on each loop."""
    if "smtpkit" not in ctx.servers:
        return []
    return [Variant("smtpkit", loop, handler) for loop in ctx.loops for handler in ("sink", "app")]


def run(ctx: Context) -> dict[str, dict[str, list[float | None]]]:
    """Measure both servers under both loads, ``rounds`` times, interleaved.

    Returns:
        ``{load: {label: [messages per second per round, None where it failed]}}``.
    """
    results: dict[str, dict[str, list[float | None]]] = {load: {} for load in LOADS}
    with ExitStack() as stack:
        servers: dict[Variant, Server] = {}
        for variant in variants(ctx):
            servers[variant] = stack.enter_context(Server(variant, ctx))
            throughput.send(ctx, servers[variant].port, throughput.WARMUP_MESSAGES, reuse=True)
        for round_no in range(1, ctx.settings.rounds + 1):
            for load in LOADS:
                for variant, server in servers.items():
                    rate = _send(ctx, load, server.port)
                    results[load].setdefault(variant.label, []).append(rate)
                    pipelined.report("app", ctx, round_no, f"{load:11} {variant.label}", rate)
    return results
