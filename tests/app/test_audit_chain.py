"""The audit hash chain: any altered, deleted or re-ordered record is found, and named."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from uuid import UUID

import pytest

from app.audit.chain import GENESIS, ChainedRecord, canonical, link_hash, verify


def chain(contents: list[dict]) -> list[ChainedRecord]:
    records, previous = [], GENESIS
    for sequence, content in enumerate(contents, start=1):
        record_hash = link_hash(previous, content)
        records.append(ChainedRecord(sequence, content, previous, record_hash))
        previous = record_hash
    return records


CONTENTS = [{"card": f"c{i}", "probability": i / 10, "band": "low"} for i in range(1, 6)]


def test_an_intact_chain_verifies() -> None:
    assert verify(chain(CONTENTS)) is None
    assert verify([]) is None


def test_an_altered_record_is_named() -> None:
    records = chain(CONTENTS)
    records[2] = replace(records[2], content={**records[2].content, "probability": 0.01})
    broken = verify(records)
    assert broken is not None and broken.sequence == 3
    assert "content" in broken.reason


def test_a_deleted_record_breaks_the_chain_where_it_was() -> None:
    records = chain(CONTENTS)
    del records[1]
    broken = verify(records)
    assert broken is not None and broken.sequence == 3


def test_swapped_records_are_found_even_when_renumbered() -> None:
    records = chain(CONTENTS)
    records[1], records[2] = replace(records[2], sequence=2), replace(records[1], sequence=3)
    broken = verify(records)
    assert broken is not None and broken.sequence == 2
    assert "previous" in broken.reason


def test_canonical_form_ignores_key_order_and_writes_nan_as_null() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    card = UUID("12345678-1234-5678-1234-567812345678")
    first = canonical({"b": float("nan"), "a": moment, "c": card})
    second = canonical({"c": card, "a": moment, "b": None})
    assert first == second
    assert first == (
        b'{"a":"2026-01-02T03:04:05+00:00","b":null,"c":"12345678-1234-5678-1234-567812345678"}'
    )


def test_naive_timestamps_are_refused() -> None:
    with pytest.raises(ValueError):
        canonical({"at": datetime(2026, 1, 1)})
