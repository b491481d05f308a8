"""The published targets, checked against one run's figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .figures import field, field_ratio, rate_ratio
from .tables import NONE, num, table, times
from .throughput import MODES

#: (target, smtpkit's figure as shown, met: True, False or None when not measured)
Check = tuple[str, str, bool | None]

IDLE_SESSIONS = 15_000


def throughput_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """Throughput >= 4x aiosmtpd on the same loop, and >= 0.5x smtp-sink on uvloop."""
    checks: list[Check] = []
    for mode in MODES:
        by_label = results.get(mode, {})
        for loop in loops:
            vs_peer = rate_ratio(by_label, f"smtpkit/{loop}", f"aiosmtpd/{loop}")
            name = f"throughput, {mode}, {loop}: ≥ 4x aiosmtpd"
            checks.append((name, times(vs_peer), None if vs_peer is None else vs_peer >= 4.0))
        if "uvloop" in loops:
            vs_sink = rate_ratio(by_label, "smtpkit/uvloop", "smtp-sink")
            name = f"throughput, {mode}, uvloop: ≥ 0.5x smtp-sink"
            checks.append((name, times(vs_sink), None if vs_sink is None else vs_sink >= 0.5))
    return checks


def bigmsg_checks(results: dict[str, Any], loops: Sequence[str], size_mib: float) -> list[Check]:
    """Big message in <= 1/3 of aiosmtpd's time; streamed peak RSS <= 40 MiB."""
    checks: list[Check] = []
    for loop in loops:
        for handler in ("content", "spool"):
            label, base = f"smtpkit/{loop}/{handler}", f"aiosmtpd/{loop}/content"
            share = field_ratio(results, label, base, "seconds")
            name = f"{size_mib:g} MiB message, {handler}, {loop}: ≤ 1/3 of aiosmtpd's time"
            checks.append((name, times(share), None if share is None else share <= 1 / 3))
        peak = field(results.get(f"smtpkit/{loop}/spool"), "peak_rss_kib")
        mib = None if peak is None else peak / 1024
        name = f"{size_mib:g} MiB message, spool, {loop}: peak RSS ≤ 40 MiB"
        shown = NONE if mib is None else f"{mib:.1f} MiB"
        checks.append((name, shown, None if mib is None else mib <= 40.0))
    return checks


def idle_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """<= 3 KiB per idle session, with 15,000 sessions held."""
    checks: list[Check] = []
    for loop in loops:
        runs = results.get(f"smtpkit/{loop}")
        per_session, held = field(runs, "kib_per_session"), field(runs, "held")
        shown = NONE if per_session is None else f"{per_session:.2f} KiB ({num(held)} held)"
        enough = held is not None and held >= IDLE_SESSIONS
        met = None if per_session is None else (per_session <= 3.0 and enough)
        checks.append((f"idle sessions, {loop}: ≤ 3 KiB each with 15,000 held", shown, met))
    return checks


def stall_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """p99 of small messages < 50 ms during the big uploads."""
    checks: list[Check] = []
    for loop in loops:
        p99 = field(results.get(f"smtpkit/{loop}"), "p99_ms")
        shown = NONE if p99 is None else f"{p99:.1f} ms"
        checks.append((f"stall, {loop}: p99 < 50 ms", shown, None if p99 is None else p99 < 50))
    return checks


#: smtpkit ÷ the ceiling on the same loop, connections reused.
CEILING_SHARE = {"uvloop": 0.8, "asyncio": 0.9}


def _at_least(name: str, value: float | None, bound: float) -> Check:
    return (name, times(value), None if value is None else value >= bound)


def reused_checks(by_label: dict[str, Any], loops: Sequence[str], load: str) -> list[Check]:
    """With connections reused: smtpkit ≥ 0.8x (uvloop) / 0.9x (asyncio) the ceiling, and
    ≥ 1.0x smtp-sink on uvloop."""
    checks: list[Check] = []
    for loop in loops:
        if loop in CEILING_SHARE:
            share = rate_ratio(by_label, f"smtpkit/{loop}", f"ceiling/{loop}")
            bound = CEILING_SHARE[loop]
            checks.append(_at_least(f"{load}, {loop}: ≥ {bound:g}x the ceiling", share, bound))
    if "uvloop" in loops:
        vs_sink = rate_ratio(by_label, "smtpkit/uvloop", "smtp-sink")
        checks.append(_at_least(f"{load}, uvloop: ≥ 1.0x smtp-sink", vs_sink, 1.0))
    return checks


def pipelined_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """Pipelining clients: ≥ 4x aiosmtpd on each loop, and the ceiling and sink targets."""
    checks = [
        _at_least(
            f"pipelined, {loop}: ≥ 4x aiosmtpd",
            rate_ratio(results, f"smtpkit/{loop}", f"aiosmtpd/{loop}"),
            4.0,
        )
        for loop in loops
    ]
    return checks + reused_checks(results, loops, "pipelined")


def app_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """The App path within 15 % of the bare class: App ÷ SMTP ≥ 0.85."""
    checks = []
    for load, by_label in results.items():
        for loop in loops:
            share = rate_ratio(by_label, f"smtpkit/{loop}/app", f"smtpkit/{loop}")
            checks.append(
                _at_least(f"App path, {load}, {loop}: ≥ 0.85x the bare class", share, 0.85)
            )
    return checks


def durable_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """Durable Mailbox at least as fast as aiosmtpd's non-durable one."""
    return [
        _at_least(
            f"durable Mailbox, {loop}: ≥ 1.0x aiosmtpd's Mailbox",
            field_ratio(results, f"smtpkit/{loop}/mailbox", f"aiosmtpd/{loop}/mailbox", "rate"),
            1.0,
        )
        for loop in loops
    ]


def tls_checks(results: dict[str, Any], loops: Sequence[str]) -> list[Check]:
    """TLS: ≥ 2x aiosmtpd, for STARTTLS sessions and for messages over TLS."""
    checks = []
    for mode, by_label in results.items():
        for loop in loops:
            share = rate_ratio(by_label, f"smtpkit/{loop}/tls", f"aiosmtpd/{loop}/tls")
            checks.append(_at_least(f"TLS {mode}, {loop}: ≥ 2x aiosmtpd", share, 2.0))
    return checks


def render(checks: list[Check]) -> str:
    """A Markdown table of the checks: target, smtpkit's figure, met or not."""
    verdict = {True: "yes", False: "**no**", None: "not measured"}
    return table(["target", "smtpkit", "met"], [[n, v, verdict[m]] for n, v, m in checks])
