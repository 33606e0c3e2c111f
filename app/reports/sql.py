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


class DayPeriodStart(FunctionElement[str]):
    """The first day of the week (ISO, Monday) or month holding a calendar date, 'YYYY-MM-DD';
    the first clause is the date, the second the period ('week' or 'month')."""

    type = String()
    inherit_cache = True


@compiles(DayPeriodStart)
def _day_period_default(element: DayPeriodStart, compiler: Any, **kw: Any) -> str:
    day, period = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"TO_CHAR(DATE_TRUNC({period}, CAST({day} AS TIMESTAMP)), 'YYYY-MM-DD')"


@compiles(DayPeriodStart, "sqlite")
def _day_period_sqlite(element: DayPeriodStart, compiler: Any, **kw: Any) -> str:
    day, period = (compiler.process(clause, **kw) for clause in element.clauses)
    return (
        f"(CASE WHEN {period} = 'week' THEN DATE({day}, 'weekday 0', '-6 days') "
        f"ELSE DATE({day}, 'start of month') END)"
    )
