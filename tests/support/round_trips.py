"""Counting PostgreSQL round trips: libpq's protocol trace of every connection an engine opens."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any

from psycopg import pq
from sqlalchemy import event
from sqlalchemy.engine import Engine


class RoundTrips:
    """The protocol messages traced; each ``ReadyForQuery`` ends one wait for the server."""

    def __init__(self) -> None:
        self._open = ExitStack()
        self._files: list[IO[bytes]] = []

    def trace(self, dbapi_connection: Any) -> None:
        # Open as long as the connection may write to it; closed by close().
        trace_file = self._open.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
        self._files.append(trace_file)
        pgconn = dbapi_connection.pgconn
        pgconn.trace(trace_file.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def messages(self) -> list[str]:
        """One line per message (an SQL text's own line breaks are joined with spaces)."""
        messages: list[str] = []
        for trace_file in self._files:
            trace_file.seek(0)
            for line in trace_file.read().decode().splitlines():
                if line[:2] in ("F\t", "B\t") or not messages:
                    messages.append(line)
                else:
                    messages[-1] += " " + line
        return messages

    @property
    def count(self) -> int:
        return sum("\tReadyForQuery\t" in line for line in self.messages())

    def close(self) -> None:
        self._open.close()


@contextmanager
def traced(engine: Engine) -> Iterator[RoundTrips]:
    """Trace every connection ``engine`` opens from now on (its pool is emptied first)."""
    engine.dispose()
    trips = RoundTrips()

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        trips.trace(dbapi_connection)

    event.listen(engine, "connect", on_connect)
    try:
        yield trips
    finally:
        engine.dispose()
        trips.close()
