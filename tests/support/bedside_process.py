"""Bedside in other processes: audit writers spawned by multiprocessing, and ``bedside serve``.

Kept apart from the test modules, whose imports (the whole app) would make every spawned
writer slow to start: a writer imports only the audit ledger.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, Column, Float, Integer, String
from sqlalchemy.types import Uuid
from sqlmodel.sql.sqltypes import AutoString

from app.audit.ledger import content_columns, locked_chain, table_of
from app.demo.service import BedsideProcess
from app.store.database import make_engine
from app.store.timestamps import UtcDateTime

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK_TIMEOUT_SECONDS = 20.0
# SQLite hands its write lock to whoever asks while it is free; a waiter sleeps in the busy
# handler's backoff (up to 100 ms), so a writer appending back to back keeps the lock. A short
# pause between records, drawn at random, lets waiters in and makes the writers interleave.
PAUSE_BETWEEN_RECORDS_SECONDS = (0.002, 0.02)
KEY_LENGTH = 64

# --- audit writers -------------------------------------------------------------------------


def writer_iss(writer: int) -> str:
    """The ``client_iss`` that marks one writer's records."""
    return f"https://writer-{writer}.example.org"


def column_value(column: Column[Any], writer: int, index: int) -> Any:
    """A plausible value for one content column of a chained table (unique where it must be)."""
    kind = column.type
    label = f"{column.name}-{writer}-{index}"
    if isinstance(kind, UtcDateTime):
        return datetime(2026, 11, 22, 10, tzinfo=UTC) + timedelta(seconds=writer * 1000 + index)
    if isinstance(kind, Uuid):
        return uuid.uuid4()
    if isinstance(kind, Boolean):
        return index % 2 == 0
    if isinstance(kind, Float):
        return round(0.01 + (writer * 1000 + index) / 10_000, 6)
    if isinstance(kind, Integer):
        return writer * 1000 + index
    if isinstance(kind, String | AutoString):
        length = getattr(kind, "length", None)
        if length == KEY_LENGTH:  # a key or hash column; some are unique
            return hashlib.sha256(label.encode()).hexdigest()
        if length is None:  # free text or JSON
            return f'{{"writer": {writer}, "index": {index}}}'
        return label[:length]
    raise TypeError(f"no test value for {column.name} ({kind!r})")


def record_for(chain: str, writer: int, index: int) -> dict[str, Any]:
    """A complete record for ``chain``: every content column; ``client_iss`` names the writer."""
    table = table_of(chain)
    row = {name: column_value(table.c[name], writer, index) for name in content_columns(table)}
    row["client_iss"] = writer_iss(writer)
    return row


def append_records(
    database_url: str, chains: tuple[str, ...], writer: int, count: int, start: Any
) -> None:
    """Process body: wait at ``start`` for the others, then append ``count`` records per chain."""
    engine = make_engine(database_url)
    pause = random.Random(writer)
    try:
        start.wait(60)
        for index in range(count):
            for chain in chains:
                with locked_chain(engine, chain, LOCK_TIMEOUT_SECONDS) as appender:
                    appender.append(record_for(chain, writer, index))
                time.sleep(pause.uniform(*PAUSE_BETWEEN_RECORDS_SECONDS))
    finally:
        engine.dispose()


def write_concurrently(
    database_url: str, chains: tuple[str, ...], writers: int, count: int, timeout: float
) -> list[int | None]:
    """``writers`` spawned processes append ``count`` records each at once; their exit codes."""
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(writers)
    processes = [
        context.Process(target=append_records, args=(database_url, chains, writer, count, start))
        for writer in range(writers)
    ]
    try:
        for process in processes:
            process.start()
        deadline = time.monotonic() + timeout
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        return [process.exitcode for process in processes]
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join(5)


# --- bedside serve -------------------------------------------------------------------------


class BedsideServer(BedsideProcess):
    """``bedside serve`` for tests: a failed start is an AssertionError showing the server's
    output, and the server can be killed outright."""

    def start(self, ready_timeout: float = 90.0) -> None:
        try:
            super().start(ready_timeout)
        except RuntimeError as error:
            raise AssertionError(f"{error}: {self.output()}") from None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flushing; whatever was in flight is cut."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def output(self) -> str:
        """The end of what the server wrote (for failure messages)."""
        if self._log is not None:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]
