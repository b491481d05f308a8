"""Medians, percentiles and ratios, skipping failed measurements (None)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The nearest-rank ``pct`` percentile of ``values``.

    Raises:
        ValueError: If ``values`` is empty or ``pct`` is outside (0, 100].
    """
    if not values:
        raise ValueError("percentile: got no values, expected at least one")
    if not 0 < pct <= 100:
        raise ValueError(f"percentile: got pct={pct}, expected 0 < pct <= 100")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(pct / 100 * len(ordered)) - 1)]


def median(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None, or None if there are none."""
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the divisor is 0."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def paired_ratio(
    numerators: Sequence[float | None], denominators: Sequence[float | None]
) -> float | None:
    """The median of the per-round ratios ``numerators[i] / denominators[i]``.

    Each round measures every server back to back, so a per-round ratio compares servers
    under the same load on the machine; rounds where either side failed are skipped.
    """
    return median([ratio(n, d) for n, d in zip(numerators, denominators, strict=False)])
