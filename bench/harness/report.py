"""The whole report: machine, command, targets and the four result tables, in Markdown."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from . import bdat, construct, tables, targets
from .context import MIB, Settings
from .machine import summary


def _rounds(count: int) -> str:
    return "1 round" if count == 1 else f"{count} interleaved rounds"


def _settings_line(settings: Settings, sections: Collection[str]) -> str:
    s = settings
    said = {
        "throughput": f"Throughput: smtp-source, {s.sessions} sessions, "
        f"{s.message_size:,}-byte messages, {s.reuse_messages:,} reusing "
        f"connections and {s.disconnect_messages:,} one per connection.",
        "bigmsg": f"Big message: {s.big_size / MIB:g} MiB.",
        "idle": f"Idle: {s.idle_sessions:,} sessions.",
        "stall": f"Stall: {s.stall_probes} probe messages during {s.stall_uploaders} "
        f"uploads of {s.stall_upload_size / MIB:g} MiB.",
        "pipelined": f"Pipelined: {s.pipelined_processes} client processes x "
        f"{s.pipelined_connections} sessions, {s.pipelined_messages:,} messages.",
        "app": f"App path: the throughput and pipelined loads, {s.reuse_messages:,} and "
        f"{s.pipelined_messages:,} messages.",
        "durable": f"Durable: smtp-source, {s.durable_sessions} sessions, "
        f"{s.durable_messages:,} messages.",
        "cpu": "CPU: server user + system time per message under the throughput (reused "
        "connections) and pipelined loads.",
        "tls": f"TLS: {s.tls_handshakes:,} STARTTLS sessions, {s.tls_messages:,} messages "
        "from the pipelined clients.",
    }
    return " ".join(
        [f"Medians of {_rounds(s.rounds)}."] + [t for k, t in said.items() if k in sections]
    )


def _load_line(load: dict[str, list[float]]) -> str:
    def shown(values: list[float]) -> str:
        return " / ".join(f"{value:.2f}" for value in values)

    return (
        f"Load average (1 / 5 / 15 min) at the start: {shown(load['start'])}; "
        f"at the end: {shown(load['end'])}."
    )


def render(run: dict[str, Any]) -> str:
    """Render a run (as saved in bench/results/*.json) as Markdown.

    Args:
        run: ``{"command", "started", "machine", "settings", "loops", "notes", "results"}``.

    Returns:
        The report, without a trailing newline.
    """
    settings = Settings(**run["settings"])
    results, loops = run["results"], run["loops"]
    parts = [
        f"Run of {run['started']} with `{run['command']}`.",
        f"Machine: {summary(run['machine'])}.",
        _settings_line(settings, results),
    ]
    if "load_average" in run:
        parts.append(_load_line(run["load_average"]))
    parts += [f"Note: {note}" for note in run["notes"]]
    checks: list[targets.Check] = []
    sections = []
    if "throughput" in results:
        checks += targets.throughput_checks(results["throughput"], loops)
        sections += [
            "### Throughput (messages per second)",
            tables.throughput(results["throughput"], loops),
        ]
    if "bigmsg" in results:
        checks += targets.bigmsg_checks(results["bigmsg"], loops, settings.big_size / MIB)
        sections += [
            f"### One {settings.big_size / MIB:g} MiB message",
            tables.bigmsg(results["bigmsg"]),
        ]
    if "idle" in results:
        checks += targets.idle_checks(results["idle"], loops)
        sections += ["### Idle sessions", tables.idle(results["idle"])]
    if "stall" in results:
        checks += targets.stall_checks(results["stall"], loops)
        sections += ["### Small messages during big uploads", tables.stall(results["stall"])]
    if "bdat" in results:
        sections += [
            "### CHUNKING: BDAT next to DATA (smtpkit)",
            bdat.render(results["bdat"], settings.big_size / MIB),
        ]
    more_checks, more_sections = _second_round(results, loops)
    checks += more_checks
    sections += more_sections
    parts += ["### Targets", targets.render(checks), *sections]
    return "\n\n".join(parts)


def _second_round(
    results: dict[str, Any], loops: list[str]
) -> tuple[list[targets.Check], list[str]]:
    """The checks and tables of the ceiling, pipelined, App, durable and TLS measurements."""
    checks: list[targets.Check] = []
    sections: list[str] = []
    if "throughput" in results:
        reuse = results["throughput"].get("reuse", {})
        checks += targets.reused_checks(reuse, loops, "throughput, reuse")
    if "pipelined" in results:
        checks += targets.pipelined_checks(results["pipelined"], loops)
        sections += [
            "### Pipelining clients (messages per second)",
            tables.pipelined(results["pipelined"], loops),
        ]
    if "app" in results:
        checks += targets.app_checks(results["app"], loops)
        sections += [
            "### The App path (messages per second)",
            tables.app_path(results["app"], loops),
        ]
    if "durable" in results:
        checks += targets.durable_checks(results["durable"], loops)
        sections += [
            "### Durable delivery into a Maildir (messages per second)",
            tables.durable(results["durable"], loops),
        ]
    if "cpu" in results:
        sections += [
            "### Server CPU time per message (µs)",
            tables.cpu(results["cpu"], loops),
        ]
    if "tls" in results:
        checks += targets.tls_checks(results["tls"], loops)
        sections += ["### TLS", tables.tls(results["tls"], loops)]
    if "construct" in results:
        sections += ["### Building a connection", construct.render(results["construct"])]
    return checks, sections
