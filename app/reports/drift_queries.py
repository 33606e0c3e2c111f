"""SQL (Core, SQLite and PostgreSQL) that counts predictions per (bucket, feature, reference bin)
from the ``features`` JSON and per (bucket, score bin) for the drift report; no prediction row
reaches Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, Select, String, case, func, literal, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.reports.agreement_queries import HIGH_BAND
from app.reports.queries import PREDICTION
from app.reports.sql import JsonNumber, MonthStart, WeekStart
from fairness.drift import MISSING, SCORE, Cell, FlagCell

WINDOWS = ("week", "month")


def json_number(document: Any, name: str, dialect: str) -> JsonNumber:
    """The JSON element for ``dialect``: SQLite takes a path, PostgreSQL the key."""
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    key = f'$."{escaped}"' if dialect == "sqlite" else name
    return JsonNumber(document, literal(key, String()))


@dataclass(frozen=True)
class DriftQuery:
    """Predictions of ``model`` made in [start, end), bucketed by ``window`` (week or month)."""

    model: str
    start: datetime
    end: datetime
    window: str = "week"

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"window is one of {', '.join(WINDOWS)}")
        if self.start >= self.end:
            raise ValueError("start must be before end")

    def bucket(self) -> Any:
        created = PREDICTION.c.created_at
        return WeekStart(created) if self.window == "week" else MonthStart(created)

    def complete(self, bucket: str, now: datetime) -> bool:
        """Whether the period of ``bucket`` (its first day) lies wholly in the window and past."""
        first = datetime.fromisoformat(bucket).replace(tzinfo=UTC)
        if self.window == "week":
            after = first + timedelta(days=7)
        else:
            after = first.replace(year=first.year + first.month // 12, month=first.month % 12 + 1)
        return first >= self.start and after <= min(self.end, now)

    def where(self) -> Any:
        created = PREDICTION.c.created_at
        return (PREDICTION.c.model == self.model) & (created >= self.start) & (created < self.end)


class EdgeBin(FunctionElement[int]):
    """The reference bin of a value: the number of edges at or below it (``edges[i-1] <= value <
    edges[i]`` is bin i, numpy's searchsorted side="right"), MISSING for NULL; the first clause
    is the value, the rest the edges, so the value is computed once (PostgreSQL: width_bucket)."""

    type = Integer()
    inherit_cache = True


@compiles(EdgeBin)
def _bin_default(element: EdgeBin, compiler: Any, **kw: Any) -> str:
    value, *edges = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"COALESCE(width_bucket({value}, ARRAY[{', '.join(edges)}]::float8[]), {MISSING})"


@compiles(EdgeBin, "sqlite")
def _bin_sqlite(element: EdgeBin, compiler: Any, **kw: Any) -> str:
    value, *edges = (compiler.process(clause, **kw) for clause in element.clauses)
    whens = "".join(f" WHEN {value} < {edge} THEN {i}" for i, edge in enumerate(edges))
    return f"(CASE WHEN {value} IS NULL THEN {MISSING}{whens} ELSE {len(edges)} END)"


def bin_of(value: Any, edges: Sequence[float]) -> EdgeBin:
    """The reference bin of ``value`` for these ``edges``."""
    return EdgeBin(value, *(literal(float(edge), Float()) for edge in edges))


def feature_statement(query: DriftQuery, name: str, edges: Sequence[float], dialect: str) -> Any:
    """(bucket, feature, bin, count) of one feature."""
    value = json_number(PREDICTION.c.features, name, dialect)
    rows = (
        select(query.bucket().label("bucket"), bin_of(value, edges).label("bin"))
        .where(query.where())
        .subquery()
    )
    return select(
        rows.c.bucket, literal(name, String()).label("feature"), rows.c.bin, func.count()
    ).group_by(rows.c.bucket, rows.c.bin)


def score_statement(query: DriftQuery, edges: Sequence[float]) -> Select[Any]:
    """(bucket, bin, count, flagged) of the predicted risk."""
    rows = (
        select(
            query.bucket().label("bucket"),
            bin_of(PREDICTION.c.probability, edges).label("bin"),
            case((PREDICTION.c.band == HIGH_BAND, 1), else_=0).label("flag"),
        )
        .where(query.where())
        .subquery()
    )
    keys = [rows.c.bucket, rows.c.bin]
    return select(*keys, func.count(), func.sum(rows.c.flag)).group_by(*keys)


def drift_counts(
    engine: Engine, query: DriftQuery, reference: Mapping[str, Any]
) -> tuple[list[Cell], list[FlagCell]]:
    """Feature and score bin cells, and flag cells per bucket, in one transaction."""
    dialect = engine.dialect.name
    cells: list[Cell] = []
    flags: list[FlagCell] = []
    with engine.connect() as connection:
        for name, feature in reference["features"].items():
            statement = feature_statement(query, name, feature["edges"], dialect)
            for bucket, _, bin_, count in connection.execute(statement):
                cells.append((str(bucket), name, int(bin_), int(count)))
        statement = score_statement(query, reference["score"]["edges"])
        for bucket, bin_, count, flagged in connection.execute(statement):
            cells.append((str(bucket), SCORE, int(bin_), int(count)))
            flags.append((str(bucket), int(count), int(flagged)))
    return cells, flags
