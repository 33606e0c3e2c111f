"""Statements run on the driver's cursor (``app.store.direct``) store and read exactly what
SQLAlchemy's ``execute`` stores and reads, refuse what only an execution context can complete,
and fail as SQLAlchemy fails."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.audit.ledger import table_of
from app.audit.report_index import FACT, FACT_COLUMNS, _outcomes_of, _padded
from app.audit.tables import CHAINS
from app.store import direct
from app.store.replay import SEEN_TOKEN, _remember_new
from tests.support.bedside_process import record_for

LINKS = {"previous_hash": "0" * 64, "record_hash": "1" * 64}


def _linked(chain: str, index: int) -> dict[str, Any]:
    columns = table_of(chain).columns
    row = {k: v for k, v in record_for(chain, writer=1, index=index).items() if k in columns}
    return {**row, "sequence": index, **LINKS}


@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_a_record_written_directly_reads_back_as_one_written_by_sqlalchemy(
    engine: Engine, chain: str
) -> None:
    table = table_of(chain)
    by_sqlalchemy, by_driver = _linked(chain, 1), _linked(chain, 2)
    with engine.begin() as connection:
        connection.execute(table.insert(), by_sqlalchemy)
        direct.run(connection, table.insert().inline(), by_driver)
    with engine.connect() as connection:
        stored = {
            row["sequence"]: dict(row)
            for row in connection.execute(select(table).order_by(table.c.sequence)).mappings()
        }
    for sequence, written in ((1, by_sqlalchemy), (2, by_driver)):
        assert {name: stored[sequence][name] for name in written} == written


def test_rows_read_directly_are_converted_as_sqlalchemy_converts_them(engine: Engine) -> None:
    table = table_of("prediction")
    with engine.begin() as connection:
        connection.execute(table.insert(), [_linked("prediction", i) for i in (1, 2, 3)])
    statement = (
        select(table.c.sequence, table.c.created_at, table.c.card_uuid, table.c.card_shown)
        .where(table.c.sequence >= bindparam("first"))
        .order_by(table.c.sequence)
    )
    with engine.connect() as connection:
        expected = [tuple(row) for row in connection.execute(statement, {"first": 2})]
        found = direct.fetch(connection, statement, {"first": 2})
    assert found == expected
    assert [type(value).__name__ for value in found[0]] == ["int", "datetime", "UUID", "bool"]
    assert found[0][1].tzinfo is not None


def test_several_rows_go_in_one_call_and_returning_names_the_rows_inserted(
    engine: Engine,
) -> None:
    until = datetime.now(UTC) + timedelta(hours=1)
    statement = _remember_new(engine.dialect.name)
    with engine.begin() as connection:
        assert direct.returned(connection, statement, [{"token_hash": "a", "expires_at": until}])
        new = direct.returned(
            connection,
            statement,
            [{"token_hash": h, "expires_at": until} for h in ("b", "a", "c")],
        )
        stored = connection.execute(select(SEEN_TOKEN.c.token_hash)).scalars().all()
    assert sorted(new) == ["b", "c"]  # "a" was remembered before
    assert sorted(stored) == ["a", "b", "c"]


def test_a_statement_an_execution_context_must_complete_is_refused(engine: Engine) -> None:
    without_default = ["sequence", *FACT_COLUMNS]  # "commented" has a Python-side default
    with pytest.raises(direct.NotDirect, match="defaults"):
        direct.driver_statement(FACT.insert(), engine.dialect, tuple(without_default))
    expanding = select(FACT.c.sequence).where(FACT.c.sequence.in_(bindparam("s", expanding=True)))
    with pytest.raises(direct.NotDirect, match="expanding"):
        direct.driver_statement(expanding, engine.dialect)


def test_a_parameter_the_statement_carries_is_filled_in(engine: Engine) -> None:
    statement = select(FACT.c.sequence).where(FACT.c.sequence > 5)
    compiled = direct.driver_statement(statement, engine.dialect)
    parameters = compiled.parameters({})
    assert list(parameters.values() if isinstance(parameters, dict) else parameters) == [5]


def test_a_refused_row_raises_sqlalchemys_integrity_error(engine: Engine) -> None:
    table = table_of("feedback")
    with engine.begin() as connection:
        direct.run(connection, table.insert().inline(), _linked("feedback", 1))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        direct.run(connection, table.insert().inline(), _linked("feedback", 1))
    with engine.connect() as connection:
        assert connection.execute(select(table.c.sequence)).scalars().all() == [1]


def test_a_connection_the_server_closed_is_invalidated(engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a server closes connections on PostgreSQL")
    with engine.connect() as connection:
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        connection.commit()
        with engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(DBAPIError) as raised:
            direct.fetch(connection, select(FACT.c.sequence), {})
        assert raised.value.connection_invalidated
        assert connection.invalidated


@pytest.mark.parametrize(
    ("owners", "expected"),
    [(["a"], ["a"]), (["a", "b"], ["a", "b"]), (["a", "b", "c"], ["a", "b", "c", "c"])],
)
def test_an_outcome_lookup_is_padded_to_a_power_of_two(
    owners: list[str], expected: list[str]
) -> None:
    parameters = _padded(owners)
    assert list(parameters.values()) == expected
    assert set(_outcomes_of("encounter_key", len(parameters)).compile().params) == set(parameters)


def test_a_columns_own_conversion_runs_on_every_backend(engine: Engine) -> None:
    table = table_of("prediction")
    naive = {**_linked("prediction", 1), "created_at": datetime(2026, 11, 22, 10)}
    with pytest.raises(ValueError, match="naive"), engine.begin() as connection:
        direct.run(connection, table.insert().inline(), naive)
