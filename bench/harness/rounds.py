"""The round loop shared by the sections that start a fresh server per measurement."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import procs
from .context import Context, Variant
from .progress import say
from .servers import Server

Row = dict[str, Any]


def measure_rounds(
    ctx: Context,
    section: str,
    variants: Iterable[Variant],
    measure: Callable[[Context, Server], Row],
    show: Callable[[Row | None], str],
) -> dict[str, list[Row | None]]:
    """Measure every variant on a fresh server, ``rounds`` times, interleaved.

    Returns:
        ``{label: [measurement per round, None where it failed]}``.
    """
    variants = list(variants)
    results: dict[str, list[Row | None]] = {}
    for round_no in range(1, ctx.settings.rounds + 1):
        for variant in variants:
            try:
                with Server(variant, ctx) as server:
                    row: Row | None = measure(ctx, server)
            except procs.ChildError as exc:
                ctx.log.write(f"{section} {variant.label}: {exc}\n".encode())
                row = None
            results.setdefault(variant.label, []).append(row)
            say(section, f"round {round_no}/{ctx.settings.rounds} {variant.label}: {show(row)}")
    return results
