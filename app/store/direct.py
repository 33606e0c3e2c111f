"""Statements of the write path, compiled once and run on the driver's own cursor.

SQLAlchemy's ``Connection.execute`` spends about twice the driver's time on a small statement
(per call: cache keys, parameter construction, an execution context, a result object). The
statements every CDS call runs — the chain's lock and head, the outcome lookup, the record and
index inserts, the JWT replay memory's insert — are fixed: here each is compiled once per
dialect (and set of parameter names) and afterwards only its parameters and results are
converted, by the type processors SQLAlchemy applies. Only statements with nothing left for an
execution context to do are accepted: no Python-side column defaults, no expanding ``IN``
parameters. Driver errors are raised as SQLAlchemy's, and a connection they show to be broken is
invalidated, as ``execute`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

Row = Mapping[str, Any]


class NotDirect(ValueError):
    """The statement needs SQLAlchemy's execution context: run it with ``execute``."""


@dataclass(frozen=True)
class DriverStatement:
    """A compiled statement: its SQL in the driver's parameter style and how to fill it."""

    sql: str
    names: tuple[str, ...]  # every parameter, in the order a positional driver takes them
    processors: tuple[Callable[[Any], Any] | None, ...]
    fixed: Mapping[str, Any]  # parameters whose value the statement carries
    positional: bool
    columns: tuple[Any, ...]  # the types of the columns returned
    dialect: Dialect
    _results: dict[tuple[Any, ...], tuple[Callable[[Any], Any] | None, ...]] = field(
        default_factory=dict
    )

    def converted(self, found: list[Any], description: Sequence[Any]) -> list[tuple[Any, ...]]:
        """Rows as SQLAlchemy returns them (its result processors depend on the driver's type
        codes, known once a statement ran: they are cached per type codes)."""
        codes = tuple(column[1] for column in description)
        processors = self._results.get(codes)
        if processors is None:
            processors = tuple(
                kind.dialect_impl(self.dialect).result_processor(self.dialect, code)
                for kind, code in zip(self.columns, codes, strict=True)
            )
            self._results[codes] = processors
        if not any(processors):
            return [tuple(one) for one in found]
        return [
            tuple(v if p is None else p(v) for v, p in zip(one, processors, strict=True))
            for one in found
        ]

    def parameters(self, row: Row) -> Sequence[Any] | dict[str, Any]:
        values = [
            self._value(name, row, process)
            for name, process in zip(self.names, self.processors, strict=True)
        ]
        return values if self.positional else dict(zip(self.names, values, strict=True))

    def _value(self, name: str, row: Row, process: Callable[[Any], Any] | None) -> Any:
        value = self.fixed[name] if name not in row and name in self.fixed else row[name]
        return value if process is None else process(value)


@lru_cache(maxsize=512)
def driver_statement(
    statement: Executable, dialect: Dialect, keys: tuple[str, ...] = ()
) -> DriverStatement:
    """``statement`` compiled for ``dialect`` (``keys``: the columns an INSERT is given)."""
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys) or None)
    if compiled.insert_prefetch or compiled.update_prefetch:
        raise NotDirect("the statement computes column defaults in Python")
    if compiled.post_compile_params or compiled.literal_execute_params:
        raise NotDirect("the statement is completed at execution (expanding parameters)")
    if compiled.escaped_bind_names:
        raise NotDirect("the statement's parameter names are escaped")
    binds = {name: bind for bind, name in compiled.bind_names.items()}
    names = tuple(compiled.positiontup) if dialect.positional else tuple(binds)
    processors = tuple(
        binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names
    )
    fixed = {
        name: bind.effective_value
        for name, bind in binds.items()
        if not bind.required and bind.callable is None and bind.value is not None
    }
    returning = getattr(statement, "exported_columns", ())  # selected, or RETURNING
    columns = tuple(column.type for column in returning)
    return DriverStatement(
        compiled.string, names, processors, fixed, dialect.positional, columns, dialect
    )


def run(connection: Connection, statement: Executable, rows: Row | Sequence[Row]) -> None:
    """Execute ``statement`` once per row of ``rows`` (one mapping: once)."""
    many = [rows] if isinstance(rows, Mapping) else list(rows)
    if not many:
        return
    compiled = driver_statement(statement, connection.dialect, tuple(many[0]))
    parameters = [compiled.parameters(row) for row in many]
    with _cursor(connection, compiled.sql) as cursor:
        if len(parameters) == 1:
            cursor.execute(compiled.sql, parameters[0])
        else:
            cursor.executemany(compiled.sql, parameters)


def fetch(connection: Connection, statement: Executable, row: Row) -> list[tuple[Any, ...]]:
    """What ``statement`` returns with the parameters ``row``."""
    compiled = driver_statement(statement, connection.dialect)
    with _cursor(connection, compiled.sql) as cursor:
        cursor.execute(compiled.sql, compiled.parameters(row))
        return compiled.converted(cursor.fetchall(), cursor.description)


def returned(connection: Connection, statement: Executable, rows: Sequence[Row]) -> list[Any]:
    """The first column of what ``statement`` (with RETURNING) returns for all of ``rows``."""
    if not rows:
        return []
    compiled = driver_statement(statement, connection.dialect, tuple(rows[0]))
    parameters = [compiled.parameters(row) for row in rows]
    values: list[Any] = []
    with _cursor(connection, compiled.sql) as cursor:
        if len(parameters) > 1 and connection.dialect.driver == "psycopg":  # sent at once
            cursor.executemany(compiled.sql, parameters, returning=True)
            while True:
                values += compiled.converted(cursor.fetchall(), cursor.description)
                if not cursor.nextset():
                    break
        else:  # one row, or sqlite3, which refuses RETURNING in executemany
            for one in parameters:
                cursor.execute(compiled.sql, one)
                values += compiled.converted(cursor.fetchall(), cursor.description)
    return [found[0] for found in values]


@contextmanager
def _cursor(connection: Connection, sql: str) -> Iterator[Any]:
    """A driver cursor of ``connection``; its errors raised as SQLAlchemy raises them."""
    dbapi = connection.dialect.loaded_dbapi
    driver_connection = connection.connection.dbapi_connection
    cursor = driver_connection.cursor()  # type: ignore[union-attr]
    try:
        yield cursor
    except dbapi.Error as error:
        broken = connection.dialect.is_disconnect(error, driver_connection, cursor)
        if broken:
            connection.invalidate(error)
        raise DBAPIError.instance(
            sql, None, error, dbapi.Error, connection_invalidated=broken, dialect=connection.dialect
        ) from error
    finally:
        cursor.close()
