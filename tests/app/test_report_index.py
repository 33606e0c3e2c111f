"""The report index is exactly what the chains say: kept current append by append, it equals a
rebuild from the chains; outcomes that arrive before their prediction are found; a purge leaves
the index of what is left; a store upgraded from 0002 gets its index built."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.engine import Engine

from app.audit.chain import link_hash
from app.audit.ledger import (
    content_columns,
    content_of,
    locked_chain,
    purge_before,
    reindex,
    table_of,
)
from app.audit.models import register_packages
from app.audit.report_index import BINS, FACT, LABEL
from app.audit.tables import ChainHead
from app.factory import BUNDLED_MODELS
from app.models.package import load_packages
from app.reports.seed import Overriding, SeedConfig, seed_store
from app.store.database import make_engine
from app.store.migrate import upgrade_engine
from tests.support.bedside_process import record_for

TIMEOUT = 30.0


def snapshot(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the three index tables, in key order."""
    found = {}
    with engine.connect() as connection:
        for table in (FACT, LABEL, BINS):
            keys = list(table.primary_key.columns)
            statement = select(table).order_by(*keys)
            found[table.name] = [dict(row) for row in connection.execute(statement).mappings()]
    return found


def outcome_for(index: int, encounter: str, value: float) -> dict[str, Any]:
    """An encounter's outcome record (outcomes name no client)."""
    record = record_for("outcome", 0, index) | {
        "encounter_key": encounter,
        "card_uuid": None,
        "label": "readmission_30d",
        "value": value,
    }
    del record["client_iss"]
    return record


def seeded(predictions: int = 3000, seed: int = 2) -> SeedConfig:
    package = load_packages(BUNDLED_MODELS)[0]
    return SeedConfig(
        predictions=predictions,
        seed=seed,
        outcome_share=0.7,
        overriding=Overriding(column="sex", value="female"),
        reference=package.reference["features"],
    )


def test_the_index_kept_by_appends_equals_a_rebuild_from_the_chains(engine: Engine) -> None:
    seed_store(engine, seeded())
    kept = snapshot(engine)
    facts = kept["report_fact"]
    assert len(facts) == 3000
    assert sum(1 for row in facts if row["response"]) > 1000  # answers reached it
    assert len(kept["report_label"]) > 1500 and len(kept["feature_bin_count"]) > 100
    assert reindex(engine, TIMEOUT) == 3000
    assert snapshot(engine) == kept


def test_the_latest_answer_and_the_first_answer_time_are_kept(engine: Engine) -> None:
    prediction = record_for("prediction", 0, 0)
    created = prediction["created_at"]
    answers = []
    for index, (outcome, hours) in enumerate((("accepted", 5), ("overridden", 2), ("accepted", 9))):
        answer = record_for("feedback", 0, index)
        answer |= {
            "card_uuid": prediction["card_uuid"],
            "outcome": outcome,
            "user_comment": "changed my mind" if index == 1 else None,
            "outcome_timestamp": created + timedelta(hours=hours),
        }
        answers.append(answer)
    with locked_chain(engine, "prediction", TIMEOUT) as chain:
        chain.append(prediction)
    for answer in answers:  # one at a time, as they arrive
        with locked_chain(engine, "feedback", TIMEOUT) as chain:
            chain.append(answer)
    with engine.connect() as connection:
        fact = connection.execute(select(FACT)).mappings().one()
    assert fact["response"] == "accepted" and fact["commented"] is False  # the third answer
    assert fact["first_response_at"] == created + timedelta(hours=2)


def test_an_outcome_received_before_its_prediction_is_found(engine: Engine) -> None:
    encounter = "e" * 64
    outcome, later = (outcome_for(i, encounter, value) for i, value in ((0, 1.0), (1, 0.0)))
    with locked_chain(engine, "outcome", TIMEOUT) as chain:
        chain.append(outcome)
    first = record_for("prediction", 0, 0) | {"encounter_key": encounter}
    with locked_chain(engine, "prediction", TIMEOUT) as chain:
        sequence = chain.append(first)
    labels = snapshot(engine)["report_label"]
    expected = {"label": "readmission_30d", "sequence": sequence, "card_value": None}
    assert labels == [expected | {"encounter_value": 1.0}]
    with locked_chain(engine, "outcome", TIMEOUT) as chain:  # a correction wins
        chain.append(later)
    assert snapshot(engine)["report_label"] == [expected | {"encounter_value": 0.0}]


def test_a_purge_leaves_the_index_of_what_is_left(engine: Engine) -> None:
    config = seeded(2000, seed=4)
    seed_store(engine, config)
    cutoff = config.start + timedelta(days=45)
    removed = purge_before(engine, cutoff, TIMEOUT)
    assert removed["prediction"] > 500
    kept = snapshot(engine)
    assert len(kept["report_fact"]) == 2000 - removed["prediction"]
    assert all(row["created_at"] >= cutoff for row in kept["report_fact"])
    reindex(engine, TIMEOUT)
    assert snapshot(engine) == kept


def test_upgrading_a_store_from_0002_builds_its_index(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade_engine(engine, "0002")
        rows = [record_for("prediction", 1, i) for i in range(5)]
        for row in rows:
            row["card_uuid"] = uuid.uuid4()
            row["created_at"] = datetime(2026, 3, 1, tzinfo=UTC)
        _append_without_index(engine, rows)
        upgrade_engine(engine)
        facts = snapshot(engine)["report_fact"]
        assert [row["card_uuid"] for row in facts] == [r["card_uuid"] for r in rows]
    finally:
        engine.dispose()


def _append_without_index(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Chain ``rows`` as the 0002 code did: the chain only (there is no index table yet)."""
    table = table_of("prediction")
    columns = content_columns(table)
    with engine.begin() as connection:
        head = connection.execute(
            select(ChainHead.head_sequence, ChainHead.head_hash).where(  # type: ignore[call-overload]
                ChainHead.name == "prediction"
            )
        ).one()
        sequence, previous = head
        for row in rows:
            content = content_of(columns, row)
            sequence += 1
            record_hash = link_hash(previous, content)
            connection.execute(
                table.insert().values(
                    **content, sequence=sequence, previous_hash=previous, record_hash=record_hash
                )
            )
            previous = record_hash
        connection.execute(
            ChainHead.__table__.update()  # type: ignore[attr-defined]
            .where(ChainHead.__table__.c.name == "prediction")  # type: ignore[attr-defined]
            .values(head_sequence=sequence, head_hash=previous)
        )


def test_feature_bins_add_up_within_a_batch_and_across_transactions(engine: Engine) -> None:
    """Each prediction counts once per feature, in the training-decile bin of its value (a
    missing value in its own bin); PostgreSQL sends a batch's counts as arrays in one upsert."""
    package = load_packages(BUNDLED_MODELS)[0]
    register_packages(engine, [package])
    edges = {name: f["edges"] for name, f in package.reference["features"].items()}
    below, missing = 0, -1  # a value under the first edge; no value

    def prediction(index: int, value_of: Any) -> dict[str, Any]:
        features = {name: value_of(feature) for name, feature in edges.items()}
        return record_for("prediction", 0, index) | {
            "package_hash": package.package_hash,
            "features": orjson.dumps(features).decode(),
        }

    batches = [
        [prediction(i, lambda e: e[0] - 1) for i in range(3)]
        + [prediction(i, lambda _e: None) for i in range(3, 5)],
        [prediction(5, lambda e: e[0] - 1)],
    ]
    for batch in batches:
        with locked_chain(engine, "prediction", TIMEOUT) as chain:
            for record in batch:
                chain.append(record)
    counted = {
        (row["feature"], row["bin"]): row["count"] for row in snapshot(engine)["feature_bin_count"]
    }
    expected = {(name, below): 4 for name in edges} | {(name, missing): 2 for name in edges}
    assert counted == expected
