"""SQL (Core, SQLite and PostgreSQL) that aggregates shown cards, their clinicians' latest
response and latest outcome into cells for the agreement report, from the report index
(:mod:`app.audit.report_index`); no prediction row reaches Python."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, true
from sqlalchemy.engine import Connection, Engine

from app.reports.queries import COHORT_COLUMNS, DEFAULT_LABEL, FACT, label_value, with_label
from app.reports.scan import scan_in_parts
from app.reports.sql import FloorInt, HoursBetween, WeekStart
from fairness.agreement import AgreementCounts, Cell, from_cells

GROUPINGS = ("model_version", "band", "indicator", *COHORT_COLUMNS, "week")
HIGH_BAND = "high"


@dataclass(frozen=True)
class AgreementQuery:
    """Cards of ``model`` shown in [start, end), grouped by one of :data:`GROUPINGS`."""

    model: str
    start: datetime
    end: datetime
    group_by: str
    label: str = DEFAULT_LABEL

    def __post_init__(self) -> None:
        if self.group_by not in GROUPINGS:
            raise ValueError(f"group_by is one of {', '.join(GROUPINGS)}")
        if self.start >= self.end:
            raise ValueError("start must be before end")


def _group(name: str) -> Any:
    if name == "indicator":
        return case((FACT.c.band == HIGH_BAND, "warning"), else_="info")
    if name == "week":
        return WeekStart(FACT.c.created_at)
    return FACT.c[name]


def _shown(query: AgreementQuery) -> Any:
    return (
        (FACT.c.model == query.model)
        & (FACT.c.card_shown == true())
        & (FACT.c.created_at >= query.start)
        & (FACT.c.created_at < query.end)
    )


def _rows(query: AgreementQuery, group_by: str) -> Any:
    """One row per shown card: group, flag, latest response (its reason and comment), hours to
    the first response and the latest outcome's event."""
    value = label_value()
    hours = HoursBetween(FACT.c.first_response_at, FACT.c.created_at)
    return (
        select(
            _group(group_by).label("grp"),
            WeekStart(FACT.c.created_at).label("week"),
            FACT.c.model_version,
            FACT.c.created_at,
            case((FACT.c.band == HIGH_BAND, 1), else_=0).label("flag"),
            FACT.c.response,
            case((value.is_(None), None), (value >= 0.5, 1), else_=0).label("event"),
            case((FACT.c.commented == true(), 1), else_=0).label("comment"),
            FloorInt(case((hours < 0, 0.0), else_=hours)).label("hours"),
            FACT.c.override_system,
            FACT.c.override_code,
            FACT.c.override_display,
        )
        .select_from(with_label(query.label))
        .where(_shown(query))
        .subquery()
    )


def cells_statement(query: AgreementQuery) -> Select[Any]:
    """Cards, comments and first/last card time per (group, week, version, flag, response,
    event, whole hours to the first response, override reason): one scan for every part of the
    report."""
    rows = _rows(query, query.group_by)
    keys = [
        rows.c.grp,
        rows.c.week,
        rows.c.model_version,
        rows.c.flag,
        rows.c.response,
        rows.c.event,
        rows.c.hours,
        rows.c.override_system,
        rows.c.override_code,
        rows.c.override_display,
    ]
    aggregates = (
        func.count(),
        func.sum(rows.c.comment),
        func.min(rows.c.created_at),
        func.max(rows.c.created_at),
    )
    return select(*keys, *aggregates).group_by(*keys)


def agreement_counts(
    engine: Engine, query: AgreementQuery
) -> tuple[list[AgreementCounts], list[AgreementCounts], list[dict[str, Any]]]:
    """The group counts, the weekly counts and the model versions seen, from one query (run
    in parts)."""
    group_cells: Counter[tuple[Any, ...]] = Counter()
    week_cells: Counter[tuple[Any, ...]] = Counter()
    delays: Counter[tuple[Any, ...]] = Counter()
    reasons: Counter[tuple[Any, ...]] = Counter()
    versions: dict[str, dict[str, Any]] = {}

    def rows_of(connection: Connection, start: datetime, end: datetime) -> list[Any]:
        return list(connection.execute(cells_statement(replace(query, start=start, end=end))))

    for row in scan_in_parts(engine, rows_of, query.start, query.end):
        grp, week, version, flag, response, event, hours = row[:7]
        system, code, display, count, comments, first, last = row[7:]
        comments = int(comments or 0)
        for cells, key in ((group_cells, (str(grp),)), (week_cells, (str(week),))):
            cells[(key, bool(flag), response, event, "cards")] += count
            cells[(key, bool(flag), response, event, "comments")] += comments
        if response is not None:
            delays[((str(grp),), int(hours))] += count
        if response == "overridden":
            reasons[((str(grp),), system, code, display)] += count
        seen = versions.setdefault(
            version, {"version": version, "cards": 0, "first": first, "last": last}
        )
        seen["cards"] += count
        seen["first"], seen["last"] = min(seen["first"], first), max(seen["last"], last)
    groups = from_cells(_cells(group_cells), _flat(delays), _flat(reasons))
    weeks = from_cells(_cells(week_cells))
    return groups, weeks, [versions[version] for version in sorted(versions)]


def _cells(counts: Counter[tuple[Any, ...]]) -> list[Cell]:
    keys = {key[:4] for key in counts}
    return [
        (*key, counts[(*key, "cards")], counts[(*key, "comments")])
        for key in sorted(keys, key=repr)
    ]


def _flat(counts: Counter[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [(*key, count) for key, count in counts.items()]
