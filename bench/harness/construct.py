"""Construction and accept cost: one SMTP(), one connection through an App's factory.

The client ``clients/construct.py`` runs in the project's interpreter, on each loop, and
times three steps in microseconds of CPU time (see its docstring): building
``SMTP(handler, ...)`` as the bench servers do, one call of an App's protocol factory,
and that call followed by ``connection_made`` and ``connection_lost`` on a transport with
no socket. Each round runs the client once per loop; the table shows the median over the
rounds.
"""

from __future__ import annotations

import statistics

from . import paths, procs
from .context import Context
from .progress import say
from .tables import num, table

STEPS = (
    ("smtp_us", "`SMTP(handler, ...)`"),
    ("factory_us", "App factory: one connection object"),
    ("accept_us", "App factory + `connection_made` + `connection_lost`"),
)


def _measure(ctx: Context, loop: str) -> dict[str, float]:
    argv = [paths.project_python(), str(paths.CLIENTS_DIR / "construct.py"), f"--loop={loop}"]
    found = procs.run_json(argv, cpu=ctx.server_cpu, log=ctx.log, timeout=300.0, what="construct")
    return {key: float(found[key]) for key, _ in STEPS}


def run(ctx: Context) -> dict[str, dict[str, list[float]]]:
    """Time the three steps on each loop, ``rounds`` times.

    Returns:
        ``{loop: {step: [microseconds per round]}}``.
    """
    results: dict[str, dict[str, list[float]]] = {}
    for round_no in range(1, ctx.settings.rounds + 1):
        for loop in ctx.loops:
            figures = _measure(ctx, loop)
            for key, value in figures.items():
                results.setdefault(loop, {}).setdefault(key, []).append(value)
            shown = ", ".join(f"{key} {value:.1f}" for key, value in figures.items())
            say("construct", f"round {round_no}/{ctx.settings.rounds} {loop}: {shown}")
    return results


def render(results: dict[str, dict[str, list[float]]]) -> str:
    """One row per step, one column per loop (medians, microseconds)."""
    loops = list(results)
    rows = []
    for key, label in STEPS:
        cells = [results[loop].get(key) for loop in loops]
        rows.append([label, *(num(statistics.median(c), 1) if c else "-" for c in cells)])
    return table(["step (µs of CPU per call)", *loops], rows)
