"""Appending to, verifying and trimming the audit hash chains.

An append holds the chain's lock for the whole transaction (``SELECT … FOR UPDATE`` on the chain
head in PostgreSQL; SQLite's write lock, ``BEGIN IMMEDIATE``), so that workers writing at once
extend one consistent chain. Every wait is bounded: a store that cannot take the write in time
raises :class:`AuditUnavailable` instead of hanging the caller.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Insert,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoResultFound, SQLAlchemyError

from app.audit.chain import BrokenLink, ChainedRecord, canonical, link_canonical, verify
from app.audit.report_index import index_writes, rebuild, write_index
from app.audit.tables import CHAINS, ChainHead
from app.store import direct
from app.store.database import StoreUnavailable, set_busy_timeout
from app.store.pipeline import pipelined
from app.store.write_turns import write_turn

LINK_COLUMNS = frozenset({"id", "sequence", "previous_hash", "record_hash"})
# The column that dates each chain's records, for retention.
TIME_COLUMNS = {"prediction": "created_at", "feedback": "received_at", "outcome": "received_at"}


class AuditUnavailable(StoreUnavailable):
    """The audit store could not durably take a write (down, locked, or too slow)."""


@dataclass(frozen=True)
class Head:
    name: str
    sequence: int
    hash: str
    base_sequence: int
    base_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.name,
            "sequence": self.sequence,
            "hash": self.hash,
            "base_sequence": self.base_sequence,
            "base_hash": self.base_hash,
        }


def table_of(name: str) -> Table:
    return CHAINS[name].__table__  # type: ignore[attr-defined, no-any-return]


def content_columns(table: Table) -> list[str]:
    """The columns a record's hash covers: all but its id and its link."""
    return [column.name for column in table.columns if column.name not in LINK_COLUMNS]


def content_of(columns: list[str], row: Mapping[str, Any]) -> dict[str, Any]:
    content = {name: row[name] for name in columns}
    for name, value in content.items():
        if isinstance(value, datetime):
            content[name] = value.astimezone(UTC)
    return content


@dataclass(frozen=True)
class PreparedRecord:
    """A record's content and its canonical form: all of an append but the link itself."""

    content: dict[str, Any]
    canonical: bytes


@cache
def _content_columns_of(name: str) -> tuple[str, ...]:
    return tuple(content_columns(table_of(name)))


def prepare_record(name: str, row: Mapping[str, Any]) -> PreparedRecord:
    """Check and canonicalise ``row`` (every content column of chain ``name``, nothing else)
    before the chain's lock is taken, so that the lock is held only to link and write it."""
    columns = _content_columns_of(name)
    if set(row) != set(columns):
        raise ValueError(f"a {name} record needs exactly {sorted(columns)}")
    content = content_of(list(columns), row)
    return PreparedRecord(content, canonical(content))


class ChainAppender:
    """Adds records to one locked chain; written when the transaction block ends."""

    def __init__(self, connection: Connection, head: Head) -> None:
        self.connection = connection
        self.head = head
        self._pending: list[dict[str, Any]] = []

    def append(self, row: Mapping[str, Any] | PreparedRecord) -> int:
        """Link ``row`` (every content column, nothing else) to the chain; its sequence."""
        prepared = row if isinstance(row, PreparedRecord) else prepare_record(self.head.name, row)
        sequence = self.head.sequence + 1
        record_hash = link_canonical(self.head.hash, prepared.canonical)
        self._pending.append(
            {
                **prepared.content,
                "sequence": sequence,
                "previous_hash": self.head.hash,
                "record_hash": record_hash,
            }
        )
        self.head = Head(
            self.head.name, sequence, record_hash, self.head.base_sequence, self.head.base_hash
        )
        return sequence

    def _write(self) -> None:
        if not self._pending:
            return
        index = index_writes(self.connection, self.head.name, self._pending)
        # The writes read nothing: sent together with the transaction's COMMIT.
        with pipelined(self.connection, commit=True):
            direct.run(self.connection, _insert_into(self.head.name), self._pending)
            write_index(self.connection, index)
            direct.run(
                self.connection,
                _HEAD_UPDATE,
                {"chain": self.head.name, "sequence": self.head.sequence, "hash": self.head.hash},
            )


@contextmanager
def locked_chain(engine: Engine, name: str, timeout_seconds: float) -> Iterator[ChainAppender]:
    """A transaction holding ``name``'s lock; what is appended commits when the block ends.

    Raises :class:`AuditUnavailable` when the lock or the commit cannot be had in time.
    """
    try:
        with write_turn(engine, timeout_seconds), engine.begin() as connection:
            appender = ChainAppender(connection, _locked_head(connection, name, timeout_seconds))
            yield appender
            appender._write()
    except SQLAlchemyError as error:
        raise AuditUnavailable(f"audit store unavailable: {type(error).__name__}") from error
    except StoreUnavailable as error:
        if isinstance(error, AuditUnavailable):
            raise
        raise AuditUnavailable(f"audit store unavailable: {error}") from None


def _locked_head(connection: Connection, name: str, timeout_seconds: float) -> Head:
    """Take chain ``name``'s lock, waiting at most ``timeout_seconds``, and read its head, in
    as few statements as the dialect allows (every append runs this)."""
    milliseconds = max(1, round(timeout_seconds * 1000))
    if connection.dialect.name == "postgresql":
        bound = {"chain": name, "milliseconds": str(milliseconds)}
        return _head_of(name, direct.fetch(connection, _BOUNDED_HEAD_FOR_UPDATE, bound))
    if connection.dialect.name == "sqlite":
        set_busy_timeout(connection, milliseconds)
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    return _head(connection, name, for_update=True)


CHAIN_HEAD = ChainHead.__table__  # type: ignore[attr-defined]
# Statements of every append, built once and run on the driver's cursor (``app.store.direct``).
_HEAD = select(
    CHAIN_HEAD.c.head_sequence,
    CHAIN_HEAD.c.head_hash,
    CHAIN_HEAD.c.base_sequence,
    CHAIN_HEAD.c.base_hash,
).where(CHAIN_HEAD.c.name == bindparam("chain"))
_HEAD_FOR_UPDATE = _HEAD.with_for_update()
_MILLISECONDS = bindparam("milliseconds", type_=String)
# Both limits, for this transaction only, set in the statement that waits for the lock: the
# head row is joined with the subquery that sets them, so they are set before it is locked.
_LOCK_BOUND = select(
    func.set_config("lock_timeout", _MILLISECONDS, true()),
    func.set_config("statement_timeout", _MILLISECONDS, true()),
).subquery("bound")
_BOUNDED_HEAD_FOR_UPDATE = _HEAD.select_from(CHAIN_HEAD.join(_LOCK_BOUND, true())).with_for_update(
    of=CHAIN_HEAD
)
_HEAD_UPDATE = (
    update(CHAIN_HEAD)
    .where(CHAIN_HEAD.c.name == bindparam("chain"))
    .values(head_sequence=bindparam("sequence"), head_hash=bindparam("hash"))
)


@cache
def _insert_into(name: str) -> Insert:
    return insert(table_of(name)).inline()  # no RETURNING of the id: nothing is read


def _head(connection: Connection, name: str, for_update: bool = False) -> Head:
    statement = _HEAD_FOR_UPDATE if for_update else _HEAD
    return _head_of(name, direct.fetch(connection, statement, {"chain": name}))


def _head_of(name: str, found: list[tuple[Any, ...]]) -> Head:
    if not found:
        raise NoResultFound(f"the store has no chain {name!r}")
    return Head(name, *found[0])


def heads(engine: Engine) -> list[Head]:
    """The current head of every chain (to anchor elsewhere: a later verify must reach it)."""
    with engine.connect() as connection:
        return [_head(connection, name) for name in CHAINS]


def probe_writable(engine: Engine, timeout_seconds: float) -> bool:
    """True when the store can take the chain lock now (the transaction is rolled back)."""
    try:
        with engine.connect() as connection, connection.begin() as transaction:
            _locked_head(connection, "prediction", timeout_seconds)
            transaction.rollback()
        return True
    except SQLAlchemyError:
        engine.dispose()
        return False


@dataclass(frozen=True)
class ChainReport:
    head: Head
    records: int
    broken: BrokenLink | None


def verify_chain(engine: Engine, name: str, batch: int = 2000) -> ChainReport:
    """Re-hash ``name``'s records in sequence order, from its base up to the recorded head."""
    table = table_of(name)
    columns = content_columns(table)
    with _snapshot(engine) as connection:
        head = _head(connection, name)
        result = connection.execution_options(yield_per=batch).execute(
            select(table).order_by(table.c.sequence)
        )
        counted = _Counter(
            ChainedRecord(
                row["sequence"], content_of(columns, row), row["previous_hash"], row["record_hash"]
            )
            for row in result.mappings()
        )
        broken = verify(counted, head.base_sequence, head.base_hash)
        if broken is None:
            broken = _tail_check(head, counted)
    return ChainReport(head, counted.count, broken)


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A read transaction that sees one state: the head and the records agree."""
    if engine.dialect.name == "postgresql":
        with (
            engine.connect() as connection,
            connection.execution_options(isolation_level="REPEATABLE READ").begin(),
        ):
            yield connection
        return
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")  # deferred: the first read fixes the snapshot
        try:
            yield connection
        finally:
            connection.rollback()


class _Counter:
    """Passes records through, remembering how many and the last one."""

    def __init__(self, records: Iterator[ChainedRecord]) -> None:
        self._records = records
        self.count = 0
        self.last: ChainedRecord | None = None

    def __iter__(self) -> Iterator[ChainedRecord]:
        for record in self._records:
            self.count += 1
            self.last = record
            yield record


def _tail_check(head: Head, counted: _Counter) -> BrokenLink | None:
    """Records removed from the end leave the chain shorter than its recorded head."""
    last_sequence = counted.last.sequence if counted.last else head.base_sequence
    last_hash = counted.last.record_hash if counted.last else head.base_hash
    if (last_sequence, last_hash) == (head.sequence, head.hash):
        return None
    return BrokenLink(
        last_sequence + 1,
        f"the chain head is record {head.sequence}; the records end at {last_sequence}",
    )


# Chains the report index derives from, in the order every transaction that holds several of
# their locks takes them (an outcome append holds outcome, then prediction), so none deadlock.
INDEXED_CHAINS = ("feedback", "outcome", "prediction")


@contextmanager
def locked_index(engine: Engine, timeout_seconds: float) -> Iterator[Connection]:
    """A transaction holding the locks of every chain the report index derives from."""
    first, *others = INDEXED_CHAINS
    with locked_chain(engine, first, timeout_seconds) as chain:
        for name in others:
            _head(chain.connection, name, for_update=True)
        yield chain.connection


def reindex(engine: Engine, timeout_seconds: float) -> int:
    """Derive the report index again from the chains; the number of predictions indexed."""
    with locked_index(engine, timeout_seconds) as connection:
        return rebuild(connection)


def purge_before(engine: Engine, cutoff: datetime, timeout_seconds: float) -> dict[str, int]:
    """Delete the prediction, feedback and outcome records dated before ``cutoff`` (each chain
    then starts after them; the access log is kept) and derive the report index again from what
    is left; records removed per chain."""
    with locked_index(engine, timeout_seconds) as connection:
        removed = {name: _purge(connection, name, cutoff) for name in TIME_COLUMNS}
        if any(removed.values()):
            rebuild(connection)
    return removed


def _purge(connection: Connection, name: str, cutoff: datetime) -> int:
    table = table_of(name)
    when = table.c[TIME_COLUMNS[name]]
    last = connection.execute(select(func.max(table.c.sequence)).where(when < cutoff)).scalar_one()
    if last is None:
        return 0
    last_hash = connection.execute(
        select(table.c.record_hash).where(table.c.sequence == last)
    ).scalar_one()
    removed = connection.execute(delete(table).where(table.c.sequence <= last)).rowcount
    connection.execute(
        update(ChainHead)
        .where(ChainHead.name == name)  # type: ignore[arg-type]
        .values(base_sequence=last, base_hash=last_hash)
    )
    return int(removed)
