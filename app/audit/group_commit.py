"""Group commit for a hash chain: the records of concurrent calls appended in one transaction.

A chain admits one appender at a time and every append pays for the lock, the head and the
commit; under load the chain's writer thread appends every record waiting at once
(:class:`~app.store.batch_writer.BatchWriter`). Each caller still waits for its own commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, OperationalError

from app.audit.ledger import AuditUnavailable, locked_chain, prepare_record
from app.store.batch_writer import BatchWriter


def chain_writer(
    engine: Engine, chain: str, timeout_seconds: float
) -> BatchWriter[Mapping[str, Any], int]:
    """A writer whose results are the sequence numbers the records got in ``chain``."""

    def append_all(rows: list[Mapping[str, Any]]) -> list[int]:
        prepared = [prepare_record(chain, row) for row in rows]  # before the lock is taken
        with locked_chain(engine, chain, timeout_seconds) as appender:
            return [appender.append(record) for record in prepared]

    return BatchWriter(
        f"audit-{chain}-writer", append_all, isolate=lambda error: not store_unavailable(error)
    )


def store_unavailable(error: Exception) -> bool:
    """The store itself failed (down, locked, too slow), as opposed to one record refused."""
    if not isinstance(error, AuditUnavailable):
        return False
    cause = error.__cause__
    return cause is None or isinstance(cause, OperationalError | DisconnectionError)
