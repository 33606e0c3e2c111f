"""How report values read on a page: suppressed cells as text, never as a number."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fairness import columns as C

MISSING = "—"


def number(value: Any) -> float | None:
    """``value`` as a finite float; None for "suppressed", null, booleans and NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def shown(value: Any, kind: str = "rate") -> str:
    """One value as text: a percentage ("rate"), a ratio or statistic ("ratio", "stat"), a
    count, or hours; "suppressed" stays "suppressed" and a missing value is a dash."""
    if value == C.SUPPRESSED:
        return C.SUPPRESSED
    found = number(value)
    if found is None:
        return MISSING
    if kind == "rate":
        return f"{found * 100:.1f}%"
    if kind == "ratio":
        return f"{found:.2f}"
    if kind == "stat":
        return f"{found:.3f}"
    if kind == "hours":
        return f"{found:.1f} h"
    return f"{found:,.0f}"


def interval(row: Mapping[str, Any], key: str, kind: str = "rate") -> str:
    """The 95% interval of ``row[key]`` ("38.0–45.9%"), or "" when it has none to show."""
    low, high = row.get(key + C.LOW), row.get(key + C.HIGH)
    if number(row.get(key)) is None or number(low) is None or number(high) is None:
        return ""
    if kind == "rate":
        return f"{low * 100:.1f}–{high * 100:.1f}%"
    return f"{shown(low, kind)}–{shown(high, kind)}"


def group_label(row: Mapping[str, Any], columns: Sequence[str]) -> str:
    """A group's name from its group-by column(s): "female × Asian"."""
    return " × ".join(str(row.get(column, "")) for column in columns)
