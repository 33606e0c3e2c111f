"""Whose turn it is to write an SQLite file: one writer at a time, woken as soon as it is free.

SQLite admits one writing transaction at a time; a second writer waits in SQLite's busy handler,
which sleeps between tries for longer and longer (up to 100 ms) and so keeps waiting long after
the lock is free: under concurrent CDS calls most of the wait is those sleeps, not the writes.
Writers take a turn here first: threads of one process queue on a lock (woken the moment it is
released), and one thread per process at a time polls an advisory lock on ``<database>.writers``
every half millisecond, so writers of other workers follow within a millisecond. SQLite's own lock
stays the guarantee; this only decides who asks for it next. PostgreSQL needs none of this.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, Engine

from app.store.database import StoreUnavailable, sqlite_file

POLL_SECONDS = 0.0005


class _Turns:
    """The lock of one SQLite file in this process, and the file lock shared with the others."""

    def __init__(self, lock_file: Path | None) -> None:
        self._threads = threading.Lock()
        self._lock_file = lock_file
        self._descriptor: int | None = None

    @contextmanager
    def turn(self, timeout_seconds: float) -> Iterator[None]:
        deadline = time.monotonic() + timeout_seconds
        if not self._threads.acquire(timeout=timeout_seconds):
            raise StoreUnavailable(f"no turn to write within {timeout_seconds:g} s")
        try:
            descriptor = self._file_turn(deadline, timeout_seconds)
            try:
                yield
            finally:
                if descriptor is not None:
                    fcntl.flock(descriptor, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _file_turn(self, deadline: float, timeout_seconds: float) -> int | None:
        """Take the file lock (None when there is no file to lock, or it cannot be opened)."""
        descriptor = self._open()
        if descriptor is None:
            return None
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return descriptor
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"no turn to write within {timeout_seconds:g} s"
                    ) from None
                time.sleep(POLL_SECONDS)

    def _open(self) -> int | None:
        if self._descriptor is None and self._lock_file is not None:
            try:
                self._descriptor = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                self._lock_file = None  # a read-only folder: SQLite's busy handler alone
        return self._descriptor


_turns: dict[str, _Turns] = {}
_turns_guard = threading.Lock()


def _lock_file(url: URL) -> Path | None:
    database = sqlite_file(url)
    return None if database is None else Path(f"{database}.writers")


@contextmanager
def write_turn(engine: Engine, timeout_seconds: float) -> Iterator[None]:
    """Hold the turn to write ``engine``'s SQLite file (on other databases: no effect).

    Raises :class:`StoreUnavailable` when the turn does not come within ``timeout_seconds``.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    key = str(engine.url)
    with _turns_guard:
        turns = _turns.get(key)
        if turns is None:
            turns = _turns[key] = _Turns(_lock_file(engine.url))
    with turns.turn(timeout_seconds):
        yield
