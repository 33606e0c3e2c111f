"""JWT replay memory in the database, so that it holds across workers and replicas.

On PostgreSQL it is the ``seen_token`` table of the store, written through an engine of its own
whose commits do not wait for the WAL flush (decision 0013): a remembered token id is visible to
every worker at once, so a replay is refused as before, and the prediction or feedback its call
goes on to commit flushes it too (the WAL is flushed in order). Only the id of a call that
commits nothing itself can be lost, to a server crash within the WAL writer's delay.

An SQLite store admits one writer at a time, and every CDS call writes both a token and a
prediction: there the memory is a file of its own beside the store's (``<store>.jwt-replay``),
so that the two writes of a call, and of all the calls of every worker, do not queue for one
lock. Its rows live minutes, and nothing else reads them: the file is not migrated, backed up or
verified.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import delete, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateIndex, CreateTable
from sqlmodel import Field, SQLModel

from app.store import direct
from app.store.batch_writer import BatchWriter
from app.store.database import StoreUnavailable, make_engine, sqlite_file
from app.store.timestamps import UtcDateTime
from app.store.write_turns import write_turn


class SeenToken(SQLModel, table=True):
    """A token id seen before its expiry; only a hash of issuer and jti is kept."""

    __tablename__ = "seen_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)


SEEN_TOKEN = SeenToken.__table__  # type: ignore[attr-defined]


@cache
def _remember_new(dialect_name: str) -> Any:
    """INSERT the token hashes not seen before, RETURNING them (built once per dialect)."""
    dialect = sqlite if dialect_name == "sqlite" else postgresql
    return (
        dialect.insert(SEEN_TOKEN)
        .on_conflict_do_nothing(index_elements=["token_hash"])
        .returning(SEEN_TOKEN.c.token_hash)
    )


CREATE_SECONDS = 30.0


def replay_engine(store: Engine) -> Engine:
    """Where the replay memory is written: PostgreSQL's store database with commits that do
    not wait for the WAL flush; an SQLite file's ``<file>.jwt-replay`` (created on first use);
    otherwise (an in-memory store of one process) ``store`` itself."""
    if store.dialect.name == "postgresql":
        # One writer thread per process uses it (plus a spare while a closed one is replaced).
        engine = make_engine(store.url.render_as_string(False), pool_size=1, max_overflow=1)
        event.listen(engine, "connect", _commit_without_flush)
        return engine
    store_file = sqlite_file(store.url)
    if store_file is None:
        return store
    memory_url = store.url.set(database=f"{store_file}.jwt-replay")
    engine = make_engine(memory_url.render_as_string(False))
    # Every worker creates it as it starts: one at a time (turning a new file to WAL needs it
    # alone), and IF NOT EXISTS.
    with write_turn(engine, CREATE_SECONDS), engine.begin() as connection:
        connection.execute(CreateTable(SEEN_TOKEN, if_not_exists=True))
        for index in SEEN_TOKEN.indexes:
            connection.execute(CreateIndex(index, if_not_exists=True))
    return engine


def _commit_without_flush(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("SET synchronous_commit TO off")
    cursor.close()
    dbapi_connection.commit()


class SqlReplayGuard:
    """``first_use`` inserts the token hash; the primary key makes a replay fail atomically.

    The tokens of concurrent calls are inserted together, by one writer thread per process.
    """

    def __init__(
        self, engine: Engine, purge_every_seconds: float = 60.0, bound_seconds: float = 4.0
    ) -> None:
        self._engine = engine
        self._bound = bound_seconds
        self._purge_every = purge_every_seconds
        self._last_purge = 0.0
        self._writer: BatchWriter[tuple[str, datetime], bool] = BatchWriter(
            "jwt-replay-writer", self._first_uses, isolate=lambda _error: False
        )

    async def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        token_hash = hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()
        return await self._writer.write((token_hash, expires_at), self._bound)

    def _first_uses(self, tokens: list[tuple[str, datetime]]) -> list[bool]:
        """Whether each token is new: neither remembered before nor earlier in ``tokens``."""
        first_expiry: dict[str, datetime] = {}
        for token_hash, expires_at in tokens:
            first_expiry.setdefault(token_hash, expires_at)
        statement = _remember_new(self._engine.dialect.name)
        rows = [{"token_hash": h, "expires_at": e} for h, e in first_expiry.items()]
        try:
            with write_turn(self._engine, self._bound), self._connection() as connection:
                self._purge_expired(connection)
                inserted = set(direct.returned(connection, statement, rows))
        except SQLAlchemyError as error:
            raise StoreUnavailable("the JWT replay memory cannot be written") from error
        new = []
        for token_hash, _ in tokens:
            new.append(token_hash in inserted)
            inserted.discard(token_hash)  # a second use within the same batch is a replay
        return new

    @contextmanager
    def _connection(self) -> Iterator[Connection]:
        """On PostgreSQL each statement commits by itself: the insert is atomic alone, and a
        transaction around it would cost two more round trips (BEGIN, COMMIT) on every call."""
        if self._engine.dialect.name != "postgresql":
            with self._engine.begin() as connection:
                yield connection
            return
        with self._engine.connect() as connection:
            yield connection.execution_options(isolation_level="AUTOCOMMIT")

    def _purge_expired(self, connection: Connection) -> None:
        now = time.monotonic()
        if now - self._last_purge < self._purge_every:
            return
        self._last_purge = now
        connection.execute(delete(SEEN_TOKEN).where(SEEN_TOKEN.c.expires_at < datetime.now(UTC)))
