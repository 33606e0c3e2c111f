"""Batched writes: concurrent callers' items written together, each caller given its own outcome.

The generic writer is driven with a write function that can be held, so that what arrives while a
write is in progress is known; the prediction chain and the JWT replay memory are then written
concurrently on the real database (SQLite, or PostgreSQL when configured).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.audit.ledger import AuditUnavailable, table_of, verify_chain
from app.audit.predictions import PredictionAudit
from app.audit.pseudonym import Pseudonymizer
from app.store import batch_writer
from app.store.batch_writer import BatchWriter
from app.store.database import StoreUnavailable
from app.store.replay import SEEN_TOKEN, SqlReplayGuard
from tests.support.bedside_process import record_for

WAIT = 10.0  # seconds: bounds every wait below; none is reached when the code works


class HeldWrites:
    """A write function that records each batch; the first batch waits for ``release``."""

    def __init__(self, refuse: set[str] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.first_started = threading.Event()
        self.release = threading.Event()
        self._refuse = refuse or set()

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        if len(self.batches) == 1:
            self.first_started.set()
            assert self.release.wait(WAIT)
        refused = self._refuse.intersection(items)
        if refused:
            raise ValueError(f"refused {sorted(refused)}")
        return [item.upper() for item in items]


def test_an_item_alone_is_written_at_once_in_a_batch_of_one() -> None:
    writes = HeldWrites()
    writes.release.set()
    writer = BatchWriter("test-writer", writes)
    assert writer.submit("a").result(WAIT) == "A"
    assert writes.batches == [["a"]]


def test_items_arriving_during_a_write_are_written_together_in_order() -> None:
    writes = HeldWrites()
    writer = BatchWriter("test-writer", writes)
    first = writer.submit("first")
    assert writes.first_started.wait(WAIT)
    waiting = [writer.submit(f"item-{n}") for n in range(5)]
    writes.release.set()
    assert first.result(WAIT) == "FIRST"
    assert [future.result(WAIT) for future in waiting] == [f"ITEM-{n}" for n in range(5)]
    assert writes.batches == [["first"], [f"item-{n}" for n in range(5)]]


def test_one_refused_item_costs_only_its_own_write() -> None:
    writes = HeldWrites(refuse={"bad"})
    writer = BatchWriter("test-writer", writes)
    first = writer.submit("first")
    assert writes.first_started.wait(WAIT)
    good_before, bad, good_after = writer.submit("x"), writer.submit("bad"), writer.submit("y")
    writes.release.set()
    assert first.result(WAIT) == "FIRST"
    assert good_before.result(WAIT) == "X" and good_after.result(WAIT) == "Y"
    with pytest.raises(ValueError, match="bad"):
        bad.result(WAIT)
    # the batch of three failed, then each was written alone
    assert writes.batches[1:] == [["x", "bad", "y"], ["x"], ["bad"], ["y"]]


def test_a_failing_store_fails_the_whole_batch_without_retrying_each() -> None:
    writes = HeldWrites(refuse={"x"})
    writer = BatchWriter("test-writer", writes, isolate=lambda _error: False)
    first = writer.submit("first")
    assert writes.first_started.wait(WAIT)
    both = [writer.submit("x"), writer.submit("y")]
    writes.release.set()
    first.result(WAIT)
    for future in both:
        with pytest.raises(ValueError):
            future.result(WAIT)
    assert writes.batches[1:] == [["x", "y"]]


def test_an_item_cancelled_before_its_write_is_not_written() -> None:
    writes = HeldWrites()
    writer = BatchWriter("test-writer", writes)
    writer.submit("first")
    assert writes.first_started.wait(WAIT)
    dropped, kept = writer.submit("dropped"), writer.submit("kept")
    assert dropped.cancel()
    writes.release.set()
    assert kept.result(WAIT) == "KEPT"
    assert writes.batches == [["first"], ["kept"]]


def test_the_idle_thread_ends_and_a_new_item_starts_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch_writer, "IDLE_SECONDS", 0.05)
    writes = HeldWrites()
    writes.release.set()
    writer = BatchWriter("idle-test-writer", writes)
    assert writer.submit("a").result(WAIT) == "A"
    deadline = time.monotonic() + WAIT
    while _threads_named("idle-test-writer") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _threads_named("idle-test-writer")
    assert writer.submit("b").result(WAIT) == "B"
    assert writes.batches == [["a"], ["b"]]


def test_a_write_not_done_in_time_is_store_unavailable() -> None:
    writes = HeldWrites()
    writer = BatchWriter("test-writer", writes)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"did not answer within 0\.2 s"):
        asyncio.run(writer.write("slow", 0.2))
    assert time.monotonic() - started < WAIT
    writes.release.set()


def _threads_named(name: str) -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == name]


# --- on the real database ---------------------------------------------------------------


def _commits(engine: Engine) -> list[int]:
    commits: list[int] = []
    event.listen(engine, "commit", lambda _connection: commits.append(1))
    return commits


async def _gather(calls: list[Any]) -> list[Any]:
    return await asyncio.gather(*calls, return_exceptions=True)


def test_concurrent_predictions_share_transactions_and_extend_one_intact_chain(
    engine: Engine,
) -> None:
    audit = PredictionAudit(engine, Pseudonymizer(b"k" * 32), timeout_seconds=10.0)
    rows = [record_for("prediction", writer=1, index=n) for n in range(40)]
    commits = _commits(engine)
    outcomes = asyncio.run(_gather([audit.record(row) for row in rows]))
    assert outcomes == [None] * 40
    report = verify_chain(engine, "prediction")
    assert report.broken is None and report.records == 40 and report.head.sequence == 40
    table = table_of("prediction")
    with engine.connect() as connection:
        stored = set(connection.execute(select(table.c.card_uuid)).scalars())
    assert stored == {row["card_uuid"] for row in rows}
    assert 1 <= len(commits) < 40, "concurrent records were not committed together"


def test_a_refused_prediction_among_concurrent_ones_loses_only_itself(engine: Engine) -> None:
    audit = PredictionAudit(engine, Pseudonymizer(b"k" * 32), timeout_seconds=10.0)
    rows: list[dict[str, Any]] = [record_for("prediction", writer=2, index=n) for n in range(12)]
    broken = dict(rows[5])
    del broken["probability"]
    rows[5] = broken
    outcomes = asyncio.run(_gather([audit.record(row) for row in rows]))
    assert isinstance(outcomes[5], ValueError)
    assert [outcome for n, outcome in enumerate(outcomes) if n != 5] == [None] * 11
    report = verify_chain(engine, "prediction")
    assert report.broken is None and report.records == 11


def test_concurrent_uses_of_one_jti_let_exactly_one_through(engine: Engine) -> None:
    guard = SqlReplayGuard(engine)
    until = datetime.now(UTC) + timedelta(minutes=5)
    shared = str(uuid.uuid4())
    distinct = [str(uuid.uuid4()) for _ in range(10)]
    uses = [guard.first_use("https://ehr.example", jti, until) for jti in [shared] * 10 + distinct]
    answers = asyncio.run(_gather(uses))
    assert answers[:10].count(True) == 1 and answers[:10].count(False) == 9
    assert answers[10:] == [True] * 10
    again = asyncio.run(guard.first_use("https://ehr.example", distinct[0], until))
    assert again is False
    with engine.connect() as connection:
        remembered = connection.execute(select(func.count()).select_from(SEEN_TOKEN)).scalar()
    assert remembered == 11


def test_a_record_the_database_refuses_among_concurrent_ones_loses_only_itself(
    engine: Engine,
) -> None:
    """The refusal comes from the database, in the batch's writes (sent together on
    PostgreSQL): the batch is written again record by record and only the refused one fails."""
    audit = PredictionAudit(engine, Pseudonymizer(b"k" * 32), timeout_seconds=10.0)
    first = record_for("prediction", writer=3, index=0)
    asyncio.run(audit.record(first))
    rows = [record_for("prediction", writer=3, index=n) for n in range(1, 9)]
    rows[4] = {**rows[4], "card_uuid": first["card_uuid"]}  # already on record: unique
    outcomes = asyncio.run(_gather([audit.record(row) for row in rows]))
    assert isinstance(outcomes[4], AuditUnavailable)
    assert isinstance(outcomes[4].__cause__, IntegrityError)
    assert [outcome for n, outcome in enumerate(outcomes) if n != 4] == [None] * 7
    report = verify_chain(engine, "prediction")
    assert report.broken is None and report.records == 8
