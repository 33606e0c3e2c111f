"""A report's scan cut into consecutive parts of its window, each read on its own connection in
its own thread, so that one report uses every core on SQLite (aggregates over disjoint windows
add up; each part reads one consistent snapshot). PostgreSQL parallelises a scan itself, and
its plans for a whole window are better than for parts: it gets one part."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection, Engine

SCAN_PARTS = {"sqlite": 2}  # the cores of the machine the reports are sized for


def window_parts(start: datetime, end: datetime, parts: int) -> list[tuple[datetime, datetime]]:
    """[start, end) cut into ``parts`` consecutive windows of equal length."""
    step = (end - start) / parts
    bounds = [start + step * i for i in range(parts)] + [end]
    return list(itertools.pairwise(bounds))


def scan_in_parts(
    engine: Engine,
    rows_of: Callable[[Connection, datetime, datetime], Sequence[Any]],
    start: datetime,
    end: datetime,
) -> list[Any]:
    """Every row ``rows_of`` gives for each part of [start, end), parts read in parallel."""

    def part(window: tuple[datetime, datetime]) -> Sequence[Any]:
        with engine.connect() as connection:
            return rows_of(connection, *window)

    windows = window_parts(start, end, SCAN_PARTS.get(engine.dialect.name, 1))
    with ThreadPoolExecutor(max_workers=len(windows)) as pool:
        return [row for rows in pool.map(part, windows) for row in rows]
