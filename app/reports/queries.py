"""SQL (Core, SQLite and PostgreSQL) that aggregates predictions and their latest outcomes into
(group, risk bin, event) cells; no prediction row reaches Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, literal_column, select
from sqlalchemy.engine import Connection, Engine

from app.audit.tables import OutcomeRecord, PredictionRecord
from app.reports.sql import FloorInt
from fairness.counts import BINS, Cell, GroupCounts, from_cells

COHORT_COLUMNS = ("sex", "age_band", "race", "ethnicity", "language")
DEFAULT_LABEL = "readmission_30d"
PREDICTION = PredictionRecord.__table__  # type: ignore[attr-defined]
OUTCOME = OutcomeRecord.__table__  # type: ignore[attr-defined]


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


def latest_outcome(label: str, key: str) -> Any:
    """The value of the latest received ``label`` outcome for the prediction's ``key``
    (card_uuid or encounter_key): a correlated subquery, served by the outcome's key index."""
    return (
        select(OUTCOME.c.value)
        .where(OUTCOME.c.label == label, OUTCOME.c[key] == PREDICTION.c[key])
        .order_by(OUTCOME.c.sequence.desc())
        .limit(1)
        .correlate(PREDICTION)
        .scalar_subquery()
    )


def _in_window(query: FairnessQuery) -> Any:
    return (
        (PREDICTION.c.model == query.model)
        & (PREDICTION.c.created_at >= query.start)
        & (PREDICTION.c.created_at < query.end)
    )


def cells_statement(query: FairnessQuery) -> Select[Any]:
    """count, flagged, Σp, Σp² per (group..., bin, event); event is NULL without an outcome, the
    card's outcome winning over the encounter's."""
    value = func.coalesce(
        latest_outcome(query.label, "card_uuid"), latest_outcome(query.label, "encounter_key")
    )
    probability = PREDICTION.c.probability
    rows = (
        select(
            *(PREDICTION.c[name] for name in query.group_by),
            FloorInt(probability * literal_column(str(BINS))).label("bin"),
            case((value.is_(None), None), (value >= 0.5, 1), else_=0).label("event"),
            case((probability >= query.threshold, 1), else_=0).label("flag"),
            probability.label("p"),
        )
        .where(_in_window(query))
        .subquery()
    )
    keys = [rows.c[name] for name in (*query.group_by, "bin", "event")]
    sums = (func.sum(rows.c.flag), func.sum(rows.c.p), func.sum(rows.c.p * rows.c.p))
    return select(*keys, func.count(), *sums).group_by(*keys)


def versions_statement(query: FairnessQuery) -> Select[Any]:
    """Predictions, first and last prediction time per model version in the window."""
    version = PREDICTION.c.model_version
    return (
        select(
            version,
            func.count(),
            func.min(PREDICTION.c.created_at),
            func.max(PREDICTION.c.created_at),
        )
        .where(_in_window(query))
        .group_by(version)
        .order_by(version)
    )


def _cells(connection: Connection, query: FairnessQuery) -> list[Cell]:
    width = len(query.group_by)
    return [
        (tuple(row[:width]), *row[width:]) for row in connection.execute(cells_statement(query))
    ]


def fairness_counts(
    engine: Engine, query: FairnessQuery
) -> tuple[list[GroupCounts], list[dict[str, Any]]]:
    """The group counts and the model versions seen, in one read transaction."""
    with engine.connect() as connection:
        groups = from_cells(_cells(connection, query))
        seen = [
            {"version": version, "predictions": count, "first": first, "last": last}
            for version, count, first, last in connection.execute(versions_statement(query))
        ]
    return groups, seen
