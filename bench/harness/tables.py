"""Markdown tables from the raw results: medians per server, and ratios between servers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .figures import Rows, field, field_ratio, rate, rate_ratio
from .throughput import MODES

NONE = "—"
MODE_NAMES = {"reuse": "reuse (-d)", "disconnect": "one per connection"}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render a Markdown table; every column but the first is right-aligned."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([" --- "] + [" ---: "] * (len(header) - 1)) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def num(value: float | None, digits: int = 0) -> str:
    """``value`` with thousands separators and ``digits`` decimals, or a dash if missing."""
    return NONE if value is None else f"{value:,.{digits}f}"


def times(value: float | None) -> str:
    """A ratio such as ``4.25x``, or a dash if missing."""
    return NONE if value is None else f"{value:.2f}x"


def mib(kib: float | None) -> str:
    """KiB shown as MiB with one decimal, or a dash if missing."""
    return num(None if kib is None else kib / 1024, 1)


def split(label: str) -> tuple[str, str, str]:
    """(server, loop, handler) of a label such as ``smtpkit/uvloop/spool``."""
    parts = label.split("/")
    if parts[0] == "smtp-sink":
        return "smtp-sink", "C", "discard"
    return parts[0], parts[1], parts[2] if len(parts) > 2 else "sink"


def throughput(results: dict[str, dict[str, list[float | None]]], loops: Sequence[str]) -> str:
    """Messages per second, with smtpkit's ratios to aiosmtpd, smtp-sink and the ceiling."""
    rows = []
    for mode in MODES:
        by_label = results.get(mode, {})
        rows += [[MODE_NAMES[mode], *rate_row(by_label, loop)] for loop in loops]
    return table(["mode", *RATE_HEADER], rows)


#: The columns of :func:`rate_row`.
RATE_HEADER = ["loop", "smtpkit", "aiosmtpd", "smtp-sink", "ceiling"]
RATE_HEADER += ["÷ aiosmtpd", "÷ smtp-sink", "÷ ceiling"]


def rate_row(by_label: dict[str, list[float | None]], loop: str) -> list[str]:
    """One loop's rates of every server, and smtpkit's ratios to the others."""
    kit, peer, ceiling = f"smtpkit/{loop}", f"aiosmtpd/{loop}", f"ceiling/{loop}"
    return [
        loop,
        num(rate(by_label, kit)),
        num(rate(by_label, peer)),
        num(rate(by_label, "smtp-sink")),
        num(rate(by_label, ceiling)),
        times(rate_ratio(by_label, kit, peer)),
        times(rate_ratio(by_label, kit, "smtp-sink")),
        times(rate_ratio(by_label, kit, ceiling)),
    ]


def pipelined(results: dict[str, list[float | None]], loops: Sequence[str]) -> str:
    """Messages per second under the pipelining clients, with smtpkit's ratios."""
    return table(RATE_HEADER, [rate_row(results, loop) for loop in loops])


def app_path(results: dict[str, dict[str, list[float | None]]], loops: Sequence[str]) -> str:
    """Messages per second of the bare class with Sink and of the App, and their ratio."""
    rows = []
    for load, by_label in results.items():
        for loop in loops:
            bare, app = f"smtpkit/{loop}", f"smtpkit/{loop}/app"
            rows.append(
                [
                    load,
                    loop,
                    num(rate(by_label, bare)),
                    num(rate(by_label, app)),
                    times(rate_ratio(by_label, app, bare)),
                ]
            )
    return table(["load", "loop", "SMTP + Sink", "App (route + RCPT hook)", "App ÷ SMTP"], rows)


def durable(results: dict[str, Rows], loops: Sequence[str]) -> str:
    """Messages per second into a Maildir, and how many messages each server stored."""
    rows = []
    for loop in loops:
        kit, peer = f"smtpkit/{loop}/mailbox", f"aiosmtpd/{loop}/mailbox"
        stored = [num(field(results.get(label), "stored")) for label in (kit, peer)]
        rows.append(
            [
                loop,
                num(field(results.get(kit), "rate")),
                num(field(results.get(peer), "rate")),
                times(field_ratio(results, kit, peer, "rate")),
                " / ".join(stored),
                _filesystem(results.get(kit)),
            ]
        )
    header = ["loop", "smtpkit Mailbox (fsync)", "aiosmtpd Mailbox (no fsync)", "÷ aiosmtpd"]
    return table([*header, "stored (smtpkit / aiosmtpd)", "Maildir on"], rows)


def _filesystem(runs: Rows | None) -> str:
    found = {row.get("filesystem") for row in runs or [] if row is not None}
    found.discard(None)
    return ", ".join(sorted(str(name) for name in found)) or NONE


def cpu(results: dict[str, dict[str, list[float | None]]], loops: Sequence[str]) -> str:
    """Server CPU µs per message, smtpkit's own work above the ceiling's, and their ratio."""
    rows = []
    for load, by_label in results.items():
        for loop in loops:
            kit, ceiling = f"smtpkit/{loop}", f"ceiling/{loop}"
            labels = (kit, f"smtpkit/{loop}/app", f"aiosmtpd/{loop}", ceiling, "smtp-sink")
            medians = [rate(by_label, label) for label in labels]
            own = None if None in (medians[0], medians[3]) else medians[0] - medians[3]
            figures = [num(value, 1) for value in (*medians, own)]
            rows.append([load, loop, *figures, times(rate_ratio(by_label, ceiling, kit))])
    header = ["load", "loop", "smtpkit", "App", "aiosmtpd", "ceiling", "smtp-sink"]
    return table([*header, "smtpkit - ceiling", "ceiling ÷ smtpkit"], rows)


TLS_MODES = {"handshakes": "STARTTLS sessions per second", "messages": "messages per second"}


def tls(results: dict[str, dict[str, list[float | None]]], loops: Sequence[str]) -> str:
    """STARTTLS sessions and messages over TLS per second, smtpkit against aiosmtpd."""
    rows = []
    for mode, by_label in results.items():
        for loop in loops:
            kit, peer = f"smtpkit/{loop}/tls", f"aiosmtpd/{loop}/tls"
            rows.append(
                [
                    TLS_MODES.get(mode, mode),
                    loop,
                    num(rate(by_label, kit)),
                    num(rate(by_label, peer)),
                    times(rate_ratio(by_label, kit, peer)),
                ]
            )
    return table(["what", "loop", "smtpkit", "aiosmtpd", "÷ aiosmtpd"], rows)


def bigmsg(results: dict[str, Rows]) -> str:
    """Seconds and peak RSS per server and handler, with the time ratio to aiosmtpd."""
    rows = []
    for label, runs in results.items():
        server, loop, handler = split(label)
        share = field_ratio(results, label, f"aiosmtpd/{loop}/content", "seconds")
        rows.append(
            [
                server,
                handler,
                loop,
                num(field(runs, "seconds"), 2),
                mib(field(runs, "peak_rss_kib")),
                times(share) if server == "smtpkit" else NONE,
            ]
        )
    header = ["server", "handler", "loop", "seconds", "peak RSS (MiB)", "time ÷ aiosmtpd"]
    return table(header, rows)


def idle(results: dict[str, Rows]) -> str:
    """Sessions held and the server's memory per session."""
    rows = []
    for label, runs in results.items():
        server, loop, _handler = split(label)
        rows.append(
            [
                server,
                loop,
                num(field(runs, "held")),
                mib(field(runs, "before_kib")),
                mib(field(runs, "after_kib")),
                num(field(runs, "kib_per_session"), 2),
            ]
        )
    header = ["server", "loop", "sessions held", "RSS before (MiB)", "RSS after (MiB)"]
    return table([*header, "KiB per session"], rows)


def stall(results: dict[str, Rows]) -> str:
    """Latency of the probe's small messages during the big uploads."""
    rows: list[list[str]] = []
    for label, runs in results.items():
        server, loop, _handler = split(label)
        figures: list[Any] = [field(runs, key) for key in ("probes", "p50_ms", "p99_ms")]
        figures += [field(runs, "max_ms"), field(runs, "uploads_done")]
        rows.append(
            [
                server,
                loop,
                num(figures[0]),
                num(figures[1], 1),
                num(figures[2], 1),
                num(figures[3], 1),
                num(figures[4]),
            ]
        )
    header = ["server", "loop", "probe messages", "p50 (ms)", "p99 (ms)", "max (ms)"]
    return table([*header, "uploads done"], rows)
