"""SQL (Core, SQLite and PostgreSQL) that aggregates predictions and their latest outcomes into
(group, risk bin, event) cells from the report index (:mod:`app.audit.report_index`); no
prediction row reaches Python."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, literal_column, select
from sqlalchemy.engine import Connection, Engine

from app.audit.tables import ReportFact, ReportLabel
from app.reports.scan import scan_in_parts
from app.reports.sql import FloorInt
from fairness.counts import BINS, Cell, GroupCounts, from_cells

COHORT_COLUMNS = ("sex", "age_band", "race", "ethnicity", "language")
DEFAULT_LABEL = "readmission_30d"
FACT = ReportFact.__table__  # type: ignore[attr-defined]
LABEL = ReportLabel.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class FairnessQuery:
    """Predictions of ``model`` made in [start, end), grouped by one or two cohort columns."""

    model: str
    start: datetime
    end: datetime
    group_by: tuple[str, ...]
    threshold: float
    label: str = DEFAULT_LABEL

    def __post_init__(self) -> None:
        if not 1 <= len(self.group_by) <= 2 or set(self.group_by) - set(COHORT_COLUMNS):
            raise ValueError(f"group_by is one or two of {', '.join(COHORT_COLUMNS)}")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("group_by names a column twice")
        if self.start >= self.end:
            raise ValueError("start must be before end")


def with_label(label: str) -> Any:
    """The facts joined to their ``label`` outcomes (at most one row each)."""
    return FACT.outerjoin(LABEL, (LABEL.c.sequence == FACT.c.sequence) & (LABEL.c.label == label))


def label_value() -> Any:
    """The latest outcome value: the card's, else the encounter's (NULL: none received)."""
    return func.coalesce(LABEL.c.card_value, LABEL.c.encounter_value)


def _in_window(query: FairnessQuery) -> Any:
    return (
        (FACT.c.model == query.model)
        & (FACT.c.created_at >= query.start)
        & (FACT.c.created_at < query.end)
    )


def cells_statement(query: FairnessQuery) -> Select[Any]:
    """count, flagged, Σp, Σp², first and last prediction time per (group..., bin, event,
    version); event is NULL without an outcome, the card's outcome winning over the
    encounter's. One scan gives the cells and the versions seen."""
    value = label_value()
    probability = FACT.c.probability
    rows = (
        select(
            *(FACT.c[name] for name in query.group_by),
            FloorInt(probability * literal_column(str(BINS))).label("bin"),
            case((value.is_(None), None), (value >= 0.5, 1), else_=0).label("event"),
            FACT.c.model_version,
            case((probability >= query.threshold, 1), else_=0).label("flag"),
            probability.label("p"),
            FACT.c.created_at,
        )
        .select_from(with_label(query.label))
        .where(_in_window(query))
        .subquery()
    )
    keys = [rows.c[name] for name in (*query.group_by, "bin", "event", "model_version")]
    sums = (func.sum(rows.c.flag), func.sum(rows.c.p), func.sum(rows.c.p * rows.c.p))
    times = (func.min(rows.c.created_at), func.max(rows.c.created_at))
    return select(*keys, func.count(), *sums, *times).group_by(*keys)


def fairness_counts(
    engine: Engine, query: FairnessQuery
) -> tuple[list[GroupCounts], list[dict[str, Any]]]:
    """The group counts and the model versions seen, from one query (run in parts)."""
    width = len(query.group_by)
    cells: list[Cell] = []
    versions: dict[str, dict[str, Any]] = {}

    def rows_of(connection: Connection, start: datetime, end: datetime) -> list[Any]:
        part = replace(query, start=start, end=end)
        return list(connection.execute(cells_statement(part)))

    for row in scan_in_parts(engine, rows_of, query.start, query.end):
        bin_, event, version, count, flagged, sum_p, sum_p2, first, last = row[width:]
        cells.append((tuple(row[:width]), bin_, event, count, flagged, sum_p, sum_p2))
        seen = versions.setdefault(
            version, {"version": version, "predictions": 0, "first": first, "last": last}
        )
        seen["predictions"] += count
        seen["first"], seen["last"] = min(seen["first"], first), max(seen["last"], last)
    return from_cells(cells), [versions[version] for version in sorted(versions)]
