"""Aggregations over timed values, each naming the observations that determined its result."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

SECONDS_PER_DAY = 86400.0


@dataclass(frozen=True)
class Point:
    """One usable value of a feature, from one resource."""

    time: datetime
    value: float
    resource: dict[str, Any]
    raw_value: float | None = None
    raw_unit: str | None = None
    converted: bool = False


def aggregate(
    aggregation: str, points: Sequence[Point], index_time: datetime
) -> tuple[float, list[Point]]:
    """(value, contributing points) for non-empty ``points`` sorted by time."""
    if aggregation == "last":
        return points[-1].value, [points[-1]]
    if aggregation == "first":
        return points[0].value, [points[0]]
    if aggregation == "min":
        lowest = min(points, key=lambda point: point.value)
        return lowest.value, [lowest]
    if aggregation == "max":
        highest = max(points, key=lambda point: point.value)
        return highest.value, [highest]
    if aggregation == "mean":
        return sum(point.value for point in points) / len(points), list(points)
    if aggregation == "count":
        return float(len(points)), list(points)
    if aggregation == "days_since_last":
        last = points[-1]
        return (index_time - last.time).total_seconds() / SECONDS_PER_DAY, [last]
    if aggregation == "slope":
        return _slope_per_day(points), list(points)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _slope_per_day(points: Sequence[Point]) -> float:
    """Least-squares slope in units per day; NaN with fewer than two distinct times."""
    origin = points[0].time
    days = [(point.time - origin).total_seconds() / SECONDS_PER_DAY for point in points]
    mean_day = sum(days) / len(days)
    mean_value = sum(point.value for point in points) / len(points)
    spread = sum((day - mean_day) ** 2 for day in days)
    if spread == 0:
        return float("nan")
    covariance = sum(
        (day - mean_day) * (point.value - mean_value)
        for day, point in zip(days, points, strict=True)
    )
    return covariance / spread
