"""Figures derived from raw results, shared by the tables and the target checks.

Raw results hold one entry per round for each server label: a number (throughput) or a
dict of measurements (other sections), None where that round failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .stats import median, paired_ratio

Rows = Sequence[dict[str, Any] | None]


def values(rows: Rows | None, key: str) -> list[float | None]:
    """The per-round values of ``key`` (None where a round failed)."""
    return [None if row is None else row.get(key) for row in rows or []]


def field(rows: Rows | None, key: str) -> float | None:
    """The median of ``key`` over the rounds that did not fail."""
    return median(values(rows, key))


def rate(by_label: dict[str, list[float | None]], label: str) -> float | None:
    """The median messages per second of ``label`` in one throughput mode."""
    return median(by_label.get(label, []))


def rate_ratio(by_label: dict[str, list[float | None]], label: str, base: str) -> float | None:
    """``label``'s throughput over ``base``'s, as the median of per-round ratios."""
    return paired_ratio(by_label.get(label, []), by_label.get(base, []))


def field_ratio(results: dict[str, Rows], label: str, base: str, key: str) -> float | None:
    """``label``'s ``key`` over ``base``'s, as the median of per-round ratios."""
    return paired_ratio(values(results.get(label), key), values(results.get(base), key))
