"""Portable SQL functions for the report queries: one element each, compiled for PostgreSQL
(the default) and for SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Float, Integer, String
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement


class FloorInt(FunctionElement[int]):
    """floor(x) as an integer (SQLite: a cast, which truncates; x is never negative here)."""

    type = Integer()
    inherit_cache = True


@compiles(FloorInt)
def _floor_default(element: FloorInt, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(FloorInt, "sqlite")
def _floor_sqlite(element: FloorInt, compiler: Any, **kw: Any) -> str:
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


class WeekStart(FunctionElement[str]):
    """The Monday (ISO week start, UTC) of a timestamp, as 'YYYY-MM-DD'."""

    type = String()
    inherit_cache = True


@compiles(WeekStart)
def _week_default(element: WeekStart, compiler: Any, **kw: Any) -> str:
    moment = compiler.process(element.clauses, **kw)
    return f"TO_CHAR(DATE_TRUNC('week', {moment} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"


@compiles(WeekStart, "sqlite")
def _week_sqlite(element: WeekStart, compiler: Any, **kw: Any) -> str:
    return f"DATE({compiler.process(element.clauses, **kw)}, 'weekday 0', '-6 days')"


class HoursBetween(FunctionElement[float]):
    """(later − earlier) in hours."""

    type = Float()
    inherit_cache = True


@compiles(HoursBetween)
def _hours_default(element: HoursBetween, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(EXTRACT(EPOCH FROM ({later} - {earlier})) / 3600.0)"


@compiles(HoursBetween, "sqlite")
def _hours_sqlite(element: HoursBetween, compiler: Any, **kw: Any) -> str:
    later, earlier = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"((JULIANDAY({later}) - JULIANDAY({earlier})) * 24.0)"


class MonthStart(FunctionElement[str]):
    """The first day of the month (UTC) of a timestamp, as 'YYYY-MM-DD'."""

    type = String()
    inherit_cache = True


@compiles(MonthStart)
def _month_default(element: MonthStart, compiler: Any, **kw: Any) -> str:
    moment = compiler.process(element.clauses, **kw)
    return f"TO_CHAR(DATE_TRUNC('month', {moment} AT TIME ZONE 'UTC'), 'YYYY-MM-DD')"


@compiles(MonthStart, "sqlite")
def _month_sqlite(element: MonthStart, compiler: Any, **kw: Any) -> str:
    return f"DATE({compiler.process(element.clauses, **kw)}, 'start of month')"


class JsonNumber(FunctionElement[float]):
    """``features[name]`` of a JSON text column as a number; NULL when null or absent."""

    type = Float()
    inherit_cache = True


@compiles(JsonNumber)
def _json_default(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    document, name = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"(CAST({document} AS JSON) ->> {name})::float"


@compiles(JsonNumber, "sqlite")
def _json_sqlite(element: JsonNumber, compiler: Any, **kw: Any) -> str:
    document, path = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"json_extract({document}, {path})"
