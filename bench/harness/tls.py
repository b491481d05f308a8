"""TLS: STARTTLS sessions per second, and 1 KiB messages over TLS, smtpkit against aiosmtpd.

Both servers get the same certificate (made at run time, see :mod:`certs`) and the sink
handler. ``handshakes``: each session connects, says EHLO, STARTTLS (the client verifies
the certificate), EHLO and QUIT; ``messages``: the pipelining clients say STARTTLS once per
connection, then send their messages. The servers stay up for the whole section and each
round measures both in turn.
"""

from __future__ import annotations

from contextlib import ExitStack

from . import certs, pipelined
from .context import Context, Variant
from .servers import Server

MODES = ("handshakes", "messages")
WARMUP = 50


def _send(ctx: Context, mode: str, port: int, ca: str) -> float | None:
    if mode == "handshakes":
        extra = (f"--starttls={ca}", "--handshakes")
        return pipelined.send(ctx, port, ctx.settings.tls_handshakes, extra)
    return pipelined.send(ctx, port, ctx.settings.tls_messages, (f"--starttls={ca}",))


def variants(ctx: Context) -> list[Variant]:
    """smtpkit and aiosmtpd with a certificate, on each loop."""
    servers = [s for s in ("smtpkit", "aiosmtpd") if s in ctx.servers]
    return [Variant(server, loop, "tls") for loop in ctx.loops for server in servers]


def run(ctx: Context) -> dict[str, dict[str, list[float | None]]]:
    """Measure both servers in both modes, ``rounds`` times, interleaved.

    Returns:
        ``{mode: {label: [sessions or messages per second per round, None if it failed]}}``.
    """
    _chain, _key, ca = certs.files(ctx.spool_dir, ctx.log)
    results: dict[str, dict[str, list[float | None]]] = {mode: {} for mode in MODES}
    with ExitStack() as stack:
        servers: dict[Variant, Server] = {}
        for variant in variants(ctx):
            servers[variant] = stack.enter_context(Server(variant, ctx))
            _send(ctx, "handshakes", servers[variant].port, ca)
        for round_no in range(1, ctx.settings.rounds + 1):
            for mode in MODES:
                for variant, server in servers.items():
                    rate = _send(ctx, mode, server.port, ca)
                    results[mode].setdefault(variant.label, []).append(rate)
                    pipelined.report("tls", ctx, round_no, f"{mode:10} {variant.label}", rate)
    return results
