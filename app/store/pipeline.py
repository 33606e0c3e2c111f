"""Several statements in one round trip: psycopg's pipeline mode on PostgreSQL.

Inside :func:`pipelined` statements are sent without waiting for each answer, and the block's
end waits once for them all — with the transaction's ``COMMIT`` among them when asked. Only
statements whose results are not read may run in it (an append's inserts and updates); their
errors surface when the block ends, as SQLAlchemy errors like any other statement's. Elsewhere
(SQLite; a libpq without pipeline mode) the block changes nothing, and the transaction commits
when its own block ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


@contextmanager
def pipelined(connection: Connection, commit: bool = False) -> Iterator[None]:
    """Send the statements executed in the block together (followed by ``COMMIT`` when
    ``commit``, and the block ends without error); raise their first error at its end.

    A commit sent here ends the driver's transaction: SQLAlchemy's own commit afterwards
    finds nothing to commit and sends nothing.
    """
    if connection.dialect.driver != "psycopg" or not psycopg.Pipeline.is_supported():
        yield  # SQLite, or a libpq older than 14: one statement at a time
        return
    driver = connection.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
            if commit:  # as a statement: the driver's commit() would wait for it alone
                driver.execute("COMMIT")  # type: ignore[union-attr]
    except psycopg.Error as error:
        raise DBAPIError.instance(
            None,
            None,
            error,
            psycopg.Error,
            connection_invalidated=bool(driver.broken),  # type: ignore[union-attr]
            dialect=connection.dialect,
        ) from error
