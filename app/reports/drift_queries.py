"""SQL (Core, SQLite and PostgreSQL) that counts predictions per (bucket, feature, reference bin)
and per (bucket, score bin) for the drift report, from the report index
(:mod:`app.audit.report_index`: feature bins are counted per UTC day at write time, so drift
windows are whole UTC days); no prediction row reaches Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Float, Integer, Select, String, case, func, literal, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.audit.report_index import BINS, reference_edges
from app.audit.tables import ModelVersionRecord
from app.reports.agreement_queries import HIGH_BAND
from app.reports.queries import FACT
from app.reports.sql import DayPeriodStart, MonthStart, WeekStart
from fairness.drift import MISSING, SCORE, Cell, FlagCell

WINDOWS = ("week", "month")
VERSIONS = ModelVersionRecord.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DriftQuery:
    """Predictions of ``model`` made on the UTC days from ``start``'s to the one before ``end``
    (an ``end`` after midnight counts its whole day), bucketed by ``window`` (week or month)."""

    model: str
    start: datetime
    end: datetime
    window: str = "week"

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise ValueError(f"window is one of {', '.join(WINDOWS)}")
        if self.start >= self.end:
            raise ValueError("start must be before end")
        object.__setattr__(self, "start", _midnight(self.start))
        end = _midnight(self.end)
        object.__setattr__(self, "end", end if end == self.end else end + timedelta(days=1))

    def bucket(self) -> Any:
        created = FACT.c.created_at
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
        created = FACT.c.created_at
        return (FACT.c.model == self.model) & (created >= self.start) & (created < self.end)


def _midnight(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


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


def feature_statement(query: DriftQuery, packages: Sequence[str]) -> Any:
    """(bucket, package, feature, bin, count) of every feature, from the daily bin counts."""
    rows = (
        select(
            DayPeriodStart(BINS.c.day, literal(query.window, String())).label("bucket"),
            BINS.c.package_hash,
            BINS.c.feature,
            BINS.c.bin,
            BINS.c.count,
        )
        .where(
            BINS.c.package_hash.in_(packages)
            & (BINS.c.day >= query.start.date())
            & (BINS.c.day < query.end.date())
        )
        .subquery()
    )
    keys = [rows.c.bucket, rows.c.package_hash, rows.c.feature, rows.c.bin]
    return select(*keys, func.sum(rows.c.count)).group_by(*keys)


def score_statement(query: DriftQuery, edges: Sequence[float]) -> Select[Any]:
    """(bucket, bin, count, flagged) of the predicted risk."""
    rows = (
        select(
            query.bucket().label("bucket"),
            bin_of(FACT.c.probability, edges).label("bin"),
            case((FACT.c.band == HIGH_BAND, 1), else_=0).label("flag"),
        )
        .where(query.where())
        .subquery()
    )
    keys = [rows.c.bucket, rows.c.bin]
    return select(*keys, func.count(), func.sum(rows.c.flag)).group_by(*keys)


def drift_counts(
    engine: Engine, query: DriftQuery, reference: Mapping[str, Any]
) -> tuple[list[Cell], list[FlagCell]]:
    """Feature and score bin cells, and flag cells per bucket, in one transaction. A feature is
    counted for the model's packages whose training edges for it are the ``reference``'s (bins
    of other edges do not compare)."""
    cells: list[Cell] = []
    flags: list[FlagCell] = []
    with engine.connect() as connection:
        comparable = _comparable(connection, query.model, reference)
        packages = sorted({package for package, _ in comparable})
        totals: dict[tuple[str, str, int], int] = {}
        for bucket, package, name, bin_, count in connection.execute(
            feature_statement(query, packages)
        ):
            if (package, name) in comparable:
                key = (str(bucket), name, int(bin_))
                totals[key] = totals.get(key, 0) + int(count)
        cells.extend((bucket, name, bin_, count) for (bucket, name, bin_), count in totals.items())
        statement = score_statement(query, reference["score"]["edges"])
        for bucket, bin_, count, flagged in connection.execute(statement):
            cells.append((str(bucket), SCORE, int(bin_), int(count)))
            flags.append((str(bucket), int(count), int(flagged)))
    return cells, flags


def _comparable(
    connection: Connection, model: str, reference: Mapping[str, Any]
) -> set[tuple[str, str]]:
    """(package hash, feature) of ``model``'s packages binned with ``reference``'s edges."""
    wanted = {name: [float(e) for e in f["edges"]] for name, f in reference["features"].items()}
    hashes = connection.execute(
        select(VERSIONS.c.package_hash).where(VERSIONS.c.model == model)
    ).scalars()
    return {
        (package, name)
        for package in hashes
        for name, edges in reference_edges(connection, package).items()
        if wanted.get(name) == edges
    }
