"""TLS: STARTTLS sessions per second, and 1 KiB messages over TLS, smtpkit against aiosmtpd.

All servers get the same certificate (made at run time, see :mod:`certs`) and the sink
handler. ``handshakes``: each session connects, says EHLO, STARTTLS (the client verifies
the certificate), EHLO and QUIT; ``messages``: the pipelining clients say STARTTLS once per
connection, then send their messages. The servers stay up for the whole section and each
round measures each in turn.

A client's side of a handshake costs more than a server's (with the benchmark's ECDSA
certificate, OpenSSL verifies two signatures and decodes the certificate's key where the
server makes one signature), and the clients share the machine's cores with the server:
the sessions per second of the clients are bound by the clients as much as by the
server, which brings every server's rate closer to the others'. So the section also
counts the server's own CPU time (user + system) during the handshakes, as STARTTLS
sessions per second of server CPU time, and measures the TLS mode of the ceiling
(``ceiling_server.py`` with a certificate: nothing but the handshake), the least a
STARTTLS session costs a Python server on the same loop.
"""

from __future__ import annotations

from contextlib import ExitStack

from . import certs, cpu, pipelined
from .context import Context, Variant
from .servers import Server

MODES = ("handshakes", "messages")
#: Sessions per second of the server's CPU time, measured during ``handshakes``.
CPU_MODE = "STARTTLS sessions per server CPU second"


def _send(ctx: Context, mode: str, port: int, ca: str) -> float | None:
    if mode == "handshakes":
        extra = (f"--starttls={ca}", "--handshakes")
        return pipelined.send(ctx, port, ctx.settings.tls_handshakes, extra)
    return pipelined.send(ctx, port, ctx.settings.tls_messages, (f"--starttls={ca}",))


def _sessions(ctx: Context) -> int:
    """The sessions of one ``handshakes`` load, as :func:`pipelined.send` splits them."""
    count = ctx.settings.pipelined_processes
    return max(1, ctx.settings.tls_handshakes // count) * count


def variants(ctx: Context) -> list[Variant]:
    """smtpkit, aiosmtpd and the ceiling with a certificate, on each loop."""
    servers = [s for s in ("smtpkit", "aiosmtpd", "ceiling") if s in ctx.servers]
    return [Variant(server, loop, "tls") for loop in ctx.loops for server in servers]


def _measure(ctx: Context, mode: str, server: Server, ca: str) -> tuple[float | None, float | None]:
    """The rate of one load, and for ``handshakes`` sessions per server CPU second."""
    before = cpu.cpu_seconds(server.pid)
    rate = _send(ctx, mode, server.port, ca)
    used = cpu.cpu_seconds(server.pid) - before
    if mode != "handshakes" or rate is None or used <= 0:
        return rate, None
    return rate, _sessions(ctx) / used


def run(ctx: Context) -> dict[str, dict[str, list[float | None]]]:
    """Measure the servers in both modes, ``rounds`` times, interleaved.

    The ceiling takes the ``handshakes`` load only.

    Returns:
        ``{mode: {label: [sessions or messages per second per round, None if it failed]}}``,
        and under :data:`CPU_MODE` the sessions per second of server CPU time.
    """
    _chain, _key, ca = certs.files(ctx.spool_dir, ctx.log)
    results: dict[str, dict[str, list[float | None]]] = {mode: {} for mode in (*MODES, CPU_MODE)}
    with ExitStack() as stack:
        servers: dict[Variant, Server] = {}
        for variant in variants(ctx):
            servers[variant] = stack.enter_context(Server(variant, ctx))
            _send(ctx, "handshakes", servers[variant].port, ca)
        for round_no in range(1, ctx.settings.rounds + 1):
            for mode in MODES:
                for variant, server in servers.items():
                    if variant.server == "ceiling" and mode != "handshakes":
                        continue
                    rate, per_cpu = _measure(ctx, mode, server, ca)
                    results[mode].setdefault(variant.label, []).append(rate)
                    what = f"{mode:10} {variant.label}"
                    if mode == "handshakes":
                        results[CPU_MODE].setdefault(variant.label, []).append(per_cpu)
                        if per_cpu is not None:
                            what += f" ({1e6 / per_cpu:,.0f} µs of server CPU per session)"
                    pipelined.report("tls", ctx, round_no, what, rate)
    return results
