"""The report index: narrow tables derived from the chains, kept current in the transaction of
every append, so that a report over a million predictions scans small rows instead of wide
chained records and joins nothing (decision 0006).

- ``report_fact``: one row per prediction (what the reports group by and count) with its card's
  latest clinician response (the highest feedback sequence) and the first response time;
- ``report_label``: the latest outcome value per (label, prediction), by card and by encounter;
- ``feature_bin_count``: predictions per (package, UTC day, feature, training-decile bin).

None of it is evidence: the chains are. ``rebuild`` derives the index again from them.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import date
from functools import cache
from typing import Any, NamedTuple

import orjson
from sqlalchemy import ARRAY, Table, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from app.audit.tables import (
    CHAINS,
    ChainHead,
    FeatureBinCount,
    ModelVersionRecord,
    ReportFact,
    ReportLabel,
)
from app.store import direct

MISSING = -1  # fairness.drift.MISSING: the bin of a missing value
FACT: Table = ReportFact.__table__  # type: ignore[attr-defined]
LABEL: Table = ReportLabel.__table__  # type: ignore[attr-defined]
BINS: Table = FeatureBinCount.__table__  # type: ignore[attr-defined]
_FACT_INSERT = FACT.insert().inline()
FACT_COLUMNS = (
    "created_at",
    "model",
    "model_version",
    "package_hash",
    "card_uuid",
    "encounter_key",
    "card_shown",
    "band",
    "probability",
    "sex",
    "age_band",
    "race",
    "ethnicity",
    "language",
)
CHUNK = 500  # keys per IN (...) list
ANSWER_COLUMNS = (
    "response",
    "response_sequence",
    "override_system",
    "override_code",
    "override_display",
    "commented",
)
_FIRST = FACT.c.first_response_at
_MOMENT = bindparam("moment", type_=FACT.c.first_response_at.type)
# One statement for a batch of answers (executemany runs them in order: the last one wins).
_ANSWER = (
    update(FACT)
    .where(FACT.c.card_uuid == bindparam("card", type_=FACT.c.card_uuid.type))
    .values(
        {
            **{name: bindparam(f"new_{name}") for name in ANSWER_COLUMNS},
            "first_response_at": case(
                (_FIRST.is_(None) | (_FIRST > _MOMENT), _MOMENT), else_=_FIRST
            ),
        }
    )
)
# Reference edges per package hash; a hash names its content, so an entry never goes stale.
_edges_cache: dict[str, dict[str, list[float]]] = {}


class IndexWrite(NamedTuple):
    """One statement of an index update and the rows it is executed with."""

    statement: Any
    rows: list[dict[str, Any]]


def index_writes(
    connection: Connection, chain: str, records: list[dict[str, Any]]
) -> list[IndexWrite]:
    """What brings the index up to date with ``records`` just appended to ``chain`` (in
    order). Everything the update reads is read here; the writes read nothing, so that they can
    all be sent at once (``app.store.pipeline``)."""
    if chain == "prediction":
        return prediction_writes(connection, records, rebuilding=False)
    if chain == "feedback":
        return feedback_writes(records)
    if chain == "outcome":
        return outcome_writes(connection, records)
    return []


def write_index(connection: Connection, writes: Iterable[IndexWrite]) -> None:
    for write in writes:
        direct.run(connection, write.statement, write.rows)


def prediction_writes(
    connection: Connection, records: Sequence[Mapping[str, Any]], rebuilding: bool = True
) -> list[IndexWrite]:
    """Facts, feature bins, and the labels of outcomes that arrived before their prediction:
    by encounter (an outcome sync may precede a later prediction for the same stay) and, when
    rebuilding, by card (a new card's uuid cannot have been named by an outcome yet)."""
    writes = [
        IndexWrite(
            _FACT_INSERT,
            [
                {"sequence": r["sequence"], "commented": False, **{c: r[c] for c in FACT_COLUMNS}}
                for r in records
            ],
        )
    ]
    counts: Counter[tuple[str, date, str, int]] = Counter()
    edges_of = {h: reference_edges(connection, h) for h in {r["package_hash"] for r in records}}
    for record in records:
        edges = edges_of[record["package_hash"]]
        if not edges:
            continue
        values = orjson.loads(record["features"])
        day = record["created_at"].date()
        for name, feature_edges in edges.items():
            value = values.get(name)
            bin_ = MISSING if value is None else bisect.bisect_right(feature_edges, value)
            counts[(record["package_hash"], day, name, bin_)] += 1
    if counts:
        writes.append(_add_bin_counts(connection.dialect.name, counts))
    if rebuilding:
        writes += _labels_from_outcomes(connection, records, "card_uuid", "card_value")
    writes += _labels_from_outcomes(connection, records, "encounter_key", "encounter_value")
    return writes


def feedback_writes(records: Sequence[Mapping[str, Any]]) -> list[IndexWrite]:
    """Each answer becomes its card's latest; the earliest answer time is kept."""
    if not records:
        return []
    rows = [
        {
            "card": r["card_uuid"],
            "new_response": r["outcome"],
            "new_response_sequence": r["sequence"],
            "new_override_system": r["override_system"],
            "new_override_code": r["override_code"],
            "new_override_display": r["override_display"],
            "new_commented": bool(r["user_comment"]),
            "moment": r["outcome_timestamp"],
        }
        for r in records
    ]
    return [IndexWrite(_ANSWER, rows)]


def outcome_writes(
    connection: Connection, records: Sequence[Mapping[str, Any]]
) -> list[IndexWrite]:
    """Each outcome becomes the latest of its label for its card's and its encounter's
    predictions. Holds the prediction chain's lock too, so that a prediction committing at the
    same moment cannot miss it (the prediction side looks outcomes up in its own transaction)."""
    _lock_chain(connection, "prediction")
    writes = []
    for key, column in (("card_uuid", "card_value"), ("encounter_key", "encounter_value")):
        latest: dict[tuple[str, Any], float] = {}
        for record in records:  # in chain order: a later outcome wins
            if record[key] is not None:
                latest[(record["label"], record[key])] = record["value"]
        if not latest:
            continue
        owners = _facts_by(connection, key, {k for _, k in latest})
        rows = [
            {"label": label, "sequence": sequence, column: value}
            for (label, k), value in latest.items()
            for sequence in owners.get(k, ())
        ]
        if rows:
            writes.append(_upsert(connection, LABEL, rows, replace=(column,)))
    return writes


def rebuild(connection: Connection, batch: int = 5000) -> int:
    """Derive the whole index again from the chains (after a purge, a restore or an upgrade);
    the number of predictions indexed. The caller holds the chains' locks."""
    for table in (FACT, LABEL, BINS):
        connection.execute(delete(table))
    predictions = CHAINS["prediction"].__table__  # type: ignore[attr-defined]
    feedback = CHAINS["feedback"].__table__  # type: ignore[attr-defined]
    wanted = [*FACT_COLUMNS, "sequence", "features"]
    indexed = 0
    for records in _batches(connection, predictions, wanted, batch):
        write_index(connection, prediction_writes(connection, records))
        indexed += len(records)
    answers = [
        "sequence",
        "card_uuid",
        "outcome",
        "override_system",
        "override_code",
        "override_display",
        "user_comment",
        "outcome_timestamp",
    ]
    for records in _batches(connection, feedback, answers, batch):
        write_index(connection, feedback_writes(records))
    _analyze(connection)
    return indexed


def _analyze(connection: Connection) -> None:
    """Fresh planner statistics after a bulk load: without them PostgreSQL plans a report over
    a million facts as if they were a handful (nested loops, seconds slower)."""
    for table in (FACT, LABEL, BINS):
        connection.exec_driver_sql(f"ANALYZE {table.name}")


def reference_edges(connection: Connection, package_hash: str) -> dict[str, list[float]]:
    """Feature → training decile edges of the package (empty when it recorded no reference)."""
    found = _edges_cache.get(package_hash)
    if found is not None:
        return found
    stored = connection.execute(
        select(ModelVersionRecord.reference).where(  # type: ignore[call-overload]
            ModelVersionRecord.package_hash == package_hash
        )
    ).scalar_one_or_none()
    if stored is None:
        return {}
    features = orjson.loads(stored).get("features", {})
    edges = {name: [float(e) for e in feature["edges"]] for name, feature in features.items()}
    _edges_cache[package_hash] = edges
    return edges


@cache
def _outcomes_of(key: str, size: int) -> Any:
    """The outcomes whose ``key`` is one of ``size`` parameters ``o0``… in chain order (built
    once per key and size; ``app.store.direct`` runs no expanding ``IN``)."""
    outcomes = CHAINS["outcome"].__table__  # type: ignore[attr-defined]
    owners = [bindparam(f"o{i}", type_=outcomes.c[key].type) for i in range(size)]
    return (
        select(outcomes.c[key], outcomes.c.label, outcomes.c.value)
        .where(outcomes.c[key].in_(owners))
        .order_by(outcomes.c.sequence)
    )


def _padded(chunk: list[Any]) -> dict[str, Any]:
    """``chunk`` as parameters ``o0``…, repeated up to a power of two (few statement sizes)."""
    size = 1 << (len(chunk) - 1).bit_length()
    return {f"o{i}": chunk[min(i, len(chunk) - 1)] for i in range(size)}


def _labels_from_outcomes(
    connection: Connection, records: Sequence[Mapping[str, Any]], key: str, column: str
) -> list[IndexWrite]:
    owners: dict[Any, list[int]] = {}
    for record in records:
        if record[key] is not None:
            owners.setdefault(record[key], []).append(record["sequence"])
    latest: dict[tuple[str, int], float] = {}
    for chunk in _chunks(list(owners)):
        parameters = _padded(chunk)
        statement = _outcomes_of(key, len(parameters))
        for owner, label, value in direct.fetch(connection, statement, parameters):
            for sequence in owners[owner]:
                latest[(label, sequence)] = value
    if not latest:
        return []
    rows = [{"label": lab, "sequence": seq, column: v} for (lab, seq), v in latest.items()]
    return [_upsert(connection, LABEL, rows, replace=(column,))]


def _facts_by(connection: Connection, key: str, values: Iterable[Any]) -> dict[Any, list[int]]:
    owners: dict[Any, list[int]] = {}
    for chunk in _chunks(list(values)):
        statement = select(FACT.c[key], FACT.c.sequence).where(FACT.c[key].in_(chunk))
        for owner, sequence in connection.execute(statement):
            owners.setdefault(owner, []).append(sequence)
    return owners


def _upsert(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    add: tuple[str, ...] = (),
    replace: tuple[str, ...] = (),
) -> IndexWrite:
    """INSERT … ON CONFLICT (primary key) DO UPDATE for all ``rows``: ``add`` columns are
    summed, ``replace`` columns take the new value."""
    return IndexWrite(_upsert_statement(connection.dialect.name, table, add, replace), rows)


@cache
def _upsert_statement(
    dialect_name: str, table: Table, add: tuple[str, ...], replace: tuple[str, ...]
) -> Any:
    """Built once per table (a live append runs it on every prediction)."""
    dialect = sqlite if dialect_name == "sqlite" else postgresql
    statement = dialect.insert(table)
    changes = {name: table.c[name] + statement.excluded[name] for name in add}
    changes.update({name: statement.excluded[name] for name in replace})
    keys = [column.name for column in table.primary_key.columns]
    return statement.on_conflict_do_update(index_elements=keys, set_=changes)


BIN_COLUMNS = ("package_hash", "day", "feature", "bin", "count")


def _add_bin_counts(dialect_name: str, counts: Counter[tuple[str, date, str, int]]) -> IndexWrite:
    """Add ``counts`` to their feature bins. On PostgreSQL all rows go as arrays in one
    statement: psycopg binds and sends each row of an ``executemany`` by itself (about 25 µs a
    row, and a prediction counts a row per feature)."""
    if dialect_name == "postgresql":
        columns = [*zip(*counts, strict=True), counts.values()]
        arrays = {name: list(values) for name, values in zip(BIN_COLUMNS, columns, strict=True)}
        return IndexWrite(_BIN_COUNTS_FROM_ARRAYS, [arrays])
    rows = [dict(zip(BIN_COLUMNS, (*key, n), strict=True)) for key, n in counts.items()]
    return IndexWrite(_upsert_statement(dialect_name, BINS, ("count",), ()), rows)


def _bin_counts_from_arrays() -> Any:
    """``INSERT … SELECT * FROM unnest(:package_hash, :day, …) ON CONFLICT DO UPDATE``: every
    parameter an array of one column."""
    arrays = [bindparam(name, type_=ARRAY(BINS.c[name].type)) for name in BIN_COLUMNS]
    rows = func.unnest(*arrays).table_valued(*BIN_COLUMNS).render_derived()
    statement = postgresql.insert(BINS).from_select(
        list(BIN_COLUMNS), select(*(rows.c[name] for name in BIN_COLUMNS))
    )
    keys = [column.name for column in BINS.primary_key.columns]
    added = BINS.c["count"] + statement.excluded["count"]
    return statement.on_conflict_do_update(index_elements=keys, set_={"count": added})


_BIN_COUNTS_FROM_ARRAYS = _bin_counts_from_arrays()


def _lock_chain(connection: Connection, name: str) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(
            select(ChainHead.name).where(ChainHead.name == name).with_for_update()  # type: ignore[arg-type]
        )


def _batches(
    connection: Connection, table: Table, columns: Sequence[str], size: int
) -> Iterator[list[dict[str, Any]]]:
    after = 0
    while True:
        statement = (
            select(*(table.c[name] for name in columns))
            .where(table.c.sequence > after)
            .order_by(table.c.sequence)
            .limit(size)
        )
        records = [dict(row) for row in connection.execute(statement).mappings()]
        if not records:
            return
        yield records
        after = records[-1]["sequence"]


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]
