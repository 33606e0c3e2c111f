"""PostgreSQL round trips on the path of every CDS call, counted in libpq's protocol trace.

A checkout sends nothing (the connection is checked on its socket), the JWT replay memory's
insert is one round trip, and a prediction append sends its writes together. Before: a ping per
checkout, four round trips per replay insert and ten per append.
"""

from __future__ import annotations

import asyncio
import select
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from app.audit.ledger import locked_chain
from app.audit.models import register_packages
from app.factory import BUNDLED_MODELS
from app.models.package import load_packages
from app.store.database import make_engine
from app.store.replay import SqlReplayGuard
from tests.support.bedside_process import record_for
from tests.support.round_trips import RoundTrips, traced

UNTIL = datetime.now(UTC) + timedelta(hours=1)


@pytest.fixture
def postgres(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        pytest.skip("round trips and server-closed connections are PostgreSQL's")
    return engine


@pytest.fixture
def trips(postgres: Engine) -> Iterator[RoundTrips]:
    with traced(postgres) as counted:
        yield counted


def _warm(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def test_a_checkout_sends_nothing(postgres: Engine, trips: RoundTrips) -> None:
    _warm(postgres)
    before = trips.count
    for _ in range(3):
        with postgres.connect():
            pass
    assert trips.count == before


def test_a_replay_memory_insert_is_one_round_trip(postgres: Engine, trips: RoundTrips) -> None:
    guard = SqlReplayGuard(postgres)

    async def uses() -> list[bool]:
        await guard.first_use("https://ehr.example", "warm-up", UNTIL)  # and the purge
        before = trips.count
        answers = [
            await guard.first_use("https://ehr.example", "jti-1", UNTIL),
            await guard.first_use("https://ehr.example", "jti-1", UNTIL),
        ]
        assert trips.count - before == 2
        return answers

    assert asyncio.run(uses()) == [True, False]  # still refused the second time


def test_a_prediction_append_sends_its_writes_together(postgres: Engine, trips: RoundTrips) -> None:
    package = load_packages(BUNDLED_MODELS)[0]
    register_packages(postgres, [package])
    record = {**record_for("prediction", writer=1, index=1), "package_hash": package.package_hash}
    with locked_chain(postgres, "prediction", 5.0) as chain:
        chain.append(record)  # reads the package's reference (once per package)
    before = trips.count
    with locked_chain(postgres, "prediction", 5.0) as chain:
        chain.append(
            {**record_for("prediction", writer=1, index=2), "package_hash": record["package_hash"]}
        )
    # BEGIN, the head FOR UPDATE with the lock bound, outcomes for the index, the writes with
    # COMMIT.
    assert trips.count - before == 4
    with postgres.connect() as connection:
        counted = [
            connection.execute(text(f"SELECT {what}")).scalar_one()
            for what in (
                "count(*) FROM prediction",
                "count(*) FROM report_fact",
                "sum(count) FROM feature_bin_count",
                "head_sequence FROM audit_chain WHERE name = 'prediction'",
            )
        ]
    features = len(package.reference["features"])
    assert counted == [2, 2, 2 * features, 2]


def _backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _terminate(database_url: str, pid: int) -> None:
    admin = create_engine(database_url)
    try:
        with admin.connect() as connection:
            connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            deadline = time.monotonic() + 10
            while connection.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            ).scalar_one():
                assert time.monotonic() < deadline, "the backend did not end"
                time.sleep(0.02)
    finally:
        admin.dispose()


def test_a_connection_the_server_closed_is_replaced_at_checkout(
    postgres: Engine, database_url: str
) -> None:
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            first = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            fileno = connection.connection.driver_connection.fileno()  # type: ignore[union-attr]
        _terminate(database_url, first)
        # The server's goodbye reaches the idle socket (loopback delivers it a moment after the
        # backend is gone); its FATAL message alone, before the end of the stream, suffices.
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        assert poller.poll(5000), "the server's goodbye did not arrive"
        # The pooled connection is dead; the call that checks it out still gets an answer.
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def test_a_notification_waiting_on_an_idle_connection_does_not_discard_it(
    postgres: Engine, database_url: str
) -> None:
    engine = make_engine(database_url)
    admin = create_engine(database_url)
    try:
        with engine.connect() as connection:
            first = int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())
            connection.execute(text("LISTEN bedside_probe"))
            connection.commit()
            driver = connection.connection.driver_connection
            assert driver is not None
            fileno = driver.fileno()
        with admin.connect() as other:
            other.execute(text("NOTIFY bedside_probe"))
            other.commit()
        poller = select.poll()
        poller.register(fileno, select.POLLIN)
        assert poller.poll(5000), "the notification did not arrive"
        assert _backend_pid(engine) == first  # read and kept, not replaced
    finally:
        engine.dispose()
        admin.dispose()
