"""SQL (Core, SQLite and PostgreSQL) that aggregates shown cards, their clinicians' latest
response and latest outcome into cells for the agreement report; no prediction row reaches
Python."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, func, select, true
from sqlalchemy.engine import Connection, Engine

from app.audit.tables import FeedbackRecord
from app.reports.queries import COHORT_COLUMNS, DEFAULT_LABEL, PREDICTION, latest_outcome
from app.reports.sql import FloorInt, HoursBetween, WeekStart
from fairness.agreement import AgreementCounts, Cell, from_cells

FEEDBACK = FeedbackRecord.__table__  # type: ignore[attr-defined]
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
        return case((PREDICTION.c.band == HIGH_BAND, "warning"), else_="info")
    if name == "week":
        return WeekStart(PREDICTION.c.created_at)
    return PREDICTION.c[name]


def _of_card(column: Any) -> Any:
    """``column`` aggregated over the card's feedback: a correlated subquery on its index."""
    return (
        select(column)
        .where(FEEDBACK.c.card_uuid == PREDICTION.c.card_uuid)
        .correlate(PREDICTION)
        .scalar_subquery()
    )


def _rows(query: AgreementQuery, group_by: str) -> Any:
    """One row per shown card: group, flag, latest response (its reason and comment), hours to
    the first response and the latest outcome's event."""
    value = func.coalesce(
        latest_outcome(query.label, "card_uuid"), latest_outcome(query.label, "encounter_key")
    )
    cards = (
        select(
            _group(group_by).label("grp"),
            case((PREDICTION.c.band == HIGH_BAND, 1), else_=0).label("flag"),
            value.label("value"),
            PREDICTION.c.created_at,
            _of_card(func.max(FEEDBACK.c.sequence)).label("latest"),
            _of_card(func.min(FEEDBACK.c.outcome_timestamp)).label("first_at"),
        )
        .where(
            (PREDICTION.c.model == query.model)
            & (PREDICTION.c.card_shown == true())
            & (PREDICTION.c.created_at >= query.start)
            & (PREDICTION.c.created_at < query.end)
        )
        .subquery()
    )
    answer = FEEDBACK.alias("answer")
    comment = answer.c.user_comment
    hours = HoursBetween(cards.c.first_at, cards.c.created_at)
    return (
        select(
            cards.c.grp,
            cards.c.flag,
            answer.c.outcome.label("response"),
            case((cards.c.value.is_(None), None), (cards.c.value >= 0.5, 1), else_=0).label(
                "event"
            ),
            case((comment.is_not(None) & (func.length(comment) > 0), 1), else_=0).label("comment"),
            FloorInt(case((hours < 0, 0.0), else_=hours)).label("hours"),
            answer.c.override_system,
            answer.c.override_code,
            answer.c.override_display,
        )
        .select_from(cards.outerjoin(answer, answer.c.sequence == cards.c.latest))
        .subquery()
    )


def cells_statement(query: AgreementQuery, group_by: str) -> Select[Any]:
    """cards and comments per (group, flag, response, event)."""
    rows = _rows(query, group_by)
    keys = [rows.c.grp, rows.c.flag, rows.c.response, rows.c.event]
    return select(*keys, func.count(), func.sum(rows.c.comment)).group_by(*keys)


def delays_statement(query: AgreementQuery) -> Select[Any]:
    """Responded cards per (group, whole hours from card to first response)."""
    rows = _rows(query, query.group_by)
    keys = [rows.c.grp, rows.c.hours]
    return select(*keys, func.count()).where(rows.c.response.is_not(None)).group_by(*keys)


def reasons_statement(query: AgreementQuery) -> Select[Any]:
    """Overridden cards per (group, override system, code, display)."""
    rows = _rows(query, query.group_by)
    keys = [rows.c.grp, rows.c.override_system, rows.c.override_code, rows.c.override_display]
    overridden = rows.c.response == "overridden"
    return select(*keys, func.count()).where(overridden).group_by(*keys)


def versions_statement(query: AgreementQuery) -> Select[Any]:
    """Cards shown, first and last card time per model version in the window."""
    version, created = PREDICTION.c.model_version, PREDICTION.c.created_at
    return (
        select(version, func.count(), func.min(created), func.max(created))
        .where(
            (PREDICTION.c.model == query.model)
            & (PREDICTION.c.card_shown == true())
            & (created >= query.start)
            & (created < query.end)
        )
        .group_by(version)
        .order_by(version)
    )


def _cells(connection: Connection, query: AgreementQuery, group_by: str) -> list[Cell]:
    return [
        ((str(grp),), bool(flag), response, event, count, int(comments or 0))
        for grp, flag, response, event, count, comments in connection.execute(
            cells_statement(query, group_by)
        )
    ]


def agreement_counts(
    engine: Engine, query: AgreementQuery
) -> tuple[list[AgreementCounts], list[AgreementCounts], list[dict[str, Any]]]:
    """The group counts, the weekly counts and the model versions seen, in one transaction."""
    with engine.connect() as connection:
        delays = [((str(g),), int(h), n) for g, h, n in connection.execute(delays_statement(query))]
        reasons = [((str(g),), *rest) for g, *rest in connection.execute(reasons_statement(query))]
        groups = from_cells(_cells(connection, query, query.group_by), delays, reasons)
        weeks = from_cells(_cells(connection, query, "week"))
        versions = [
            {"version": version, "cards": count, "first": first, "last": last}
            for version, count, first, last in connection.execute(versions_statement(query))
        ]
    return groups, weeks, versions
