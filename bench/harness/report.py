"""The whole report: machine, command, targets and the four result tables, in Markdown."""

from __future__ import annotations

from typing import Any

from . import tables, targets
from .context import MIB, Settings
from .machine import summary


def _rounds(count: int) -> str:
    return "1 round" if count == 1 else f"{count} interleaved rounds"


def _settings_line(settings: Settings) -> str:
    return (
        f"Medians of {_rounds(settings.rounds)}. "
        f"Throughput: smtp-source, {settings.sessions} sessions, "
        f"{settings.message_size:,}-byte messages, {settings.reuse_messages:,} reusing "
        f"connections and {settings.disconnect_messages:,} one per connection. "
        f"Big message: {settings.big_size / MIB:g} MiB. "
        f"Idle: {settings.idle_sessions:,} sessions. "
        f"Stall: {settings.stall_probes} probe messages during {settings.stall_uploaders} "
        f"uploads of {settings.stall_upload_size / MIB:g} MiB."
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
        _settings_line(settings),
    ]
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
    parts += ["### Targets", targets.render(checks), *sections]
    return "\n\n".join(parts)
