"""Server CPU time per message: the servers' own work, which a busy machine does not hide.

Rates measure the server, the load generator and everything else on the machine at once;
on a shared machine they move a lot from round to round. The CPU time a server process
spends (user + system, from ``/proc/<pid>/stat``) during a load, divided by the messages,
counts only that server's work. Under smtp-source's reused-connection load and the
pipelining clients' load, this section measures it for smtpkit (``SMTP`` with ``Sink``,
and the App), aiosmtpd, the ceiling and smtp-sink. The servers stay up for the whole
section and each round measures every server in turn.
"""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

from . import apppath, pipelined, procs, throughput
from .context import Context, Variant
from .progress import say
from .servers import Server

LOADS = apppath.LOADS
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds that process ``pid`` has used so far.

    Raises:
        procs.ChildError: If the process is gone.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError as exc:
        raise procs.ChildError(f"pid {pid}: cannot read /proc stat ({exc})") from exc
    # The command name (field 2) may hold spaces; the fields after it are plain numbers.
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def variants(ctx: Context) -> list[Variant]:
    """smtpkit (Sink, the compiled build when asked for, App), aiosmtpd, the ceiling, smtp-sink."""
    chosen = []
    for loop in ctx.loops:
        for server, handler in (
            ("smtpkit", "sink"),
            ("smtpkit-mypyc", "sink"),
            ("smtpkit", "app"),
            ("aiosmtpd", "sink"),
        ):
            if server in ctx.servers:
                chosen.append(Variant(server, loop, handler))
        if "ceiling" in ctx.servers:
            chosen.append(Variant("ceiling", loop))
    if "smtp-sink" in ctx.servers:
        chosen.append(Variant("smtp-sink", "-"))
    return chosen


def measure(ctx: Context, load: str, server: Server) -> float | None:
    """Microseconds of the server's CPU time per message under ``load``, or None."""
    if load == "smtp-source":
        messages = ctx.settings.reuse_messages
        before = cpu_seconds(server.pid)
        rate = throughput.send(ctx, server.port, messages, reuse=True)
    else:
        messages = ctx.settings.pipelined_messages
        before = cpu_seconds(server.pid)
        rate = pipelined.send(ctx, server.port, messages)
    if rate is None:
        return None
    return (cpu_seconds(server.pid) - before) / messages * 1e6


def run(ctx: Context) -> dict[str, dict[str, list[float | None]]]:
    """Measure every server under both loads, ``rounds`` times, interleaved.

    Returns:
        ``{load: {label: [µs of server CPU per message per round, None if it failed]}}``.
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
                    micros = measure(ctx, load, server)
                    results[load].setdefault(variant.label, []).append(micros)
                    shown = "failed (see the log)" if micros is None else f"{micros:.1f} µs/msg"
                    what = f"{load:11} {variant.label}"
                    say("cpu", f"round {round_no}/{ctx.settings.rounds} {what}: {shown}")
    return results
