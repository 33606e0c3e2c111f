"""Validation results remembered by content change no mapping result, only its cost.

A memo hit must give exactly what validating would give; a resource whose checked elements
changed in any way must be validated again; the memo stays within its capacity.
"""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from fhir_mappers.hook_features import hook_record
from fhir_mappers.mapper import map_patient
from fhir_mappers.record import PatientRecord, records_from_bundle
from fhir_mappers.selection import resource_time
from fhir_mappers.validation import ValidationCache, consumed_part, part_error, validation_error
from fhir_mappers.validation_memo import ValidationMemo, content_digest
from tests.fhir_mappers.test_mapper_real_data import SPEC, comparable
from tests.support.fhir_builders import collection, observation, patient
from tests.support.samples import samples_folder

CREATININE_SERUM = "2160-0"
INDEX = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class CountingValidator:
    """``part_error`` that counts its calls (thread-safe)."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, part: dict[str, Any]) -> str | None:
        with self._lock:
            self.calls += 1
        return part_error(part)


def creatinine(value: float, **fields: Any) -> dict[str, Any]:
    return observation(
        CREATININE_SERUM, value, "mg/dL", "2024-02-10T08:00:00Z", observation_id="c1", **fields
    )


# The memo itself


def test_the_same_content_is_validated_once_and_gives_the_same_result() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(100, validator)
    first, again = creatinine(1.1), creatinine(1.1)
    assert first is not again
    assert memo.error(consumed_part(first)) is None
    assert memo.error(consumed_part(again)) is None
    assert validator.calls == 1
    assert (memo.hits, memo.misses) == (1, 1)


def test_key_order_does_not_matter_but_every_checked_value_does() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(100, validator)
    part = consumed_part(creatinine(1.1))
    memo.error(part)
    memo.error(dict(reversed(list(part.items()))))
    assert validator.calls == 1
    changed = copy.deepcopy(part)
    changed["valueQuantity"]["value"] = 1.2
    memo.error(changed)
    assert validator.calls == 2


def test_an_invalid_result_is_remembered_and_a_corrected_resource_is_valid_again() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(100, validator)
    broken = creatinine(4.0)
    broken["valueQuantity"]["precision"] = 2  # Quantity has no such element
    expected = validation_error(broken)
    assert expected is not None and "precision" in expected
    assert memo.error(consumed_part(broken)) == expected
    assert memo.error(consumed_part(copy.deepcopy(broken))) == expected
    assert validator.calls == 1
    del broken["valueQuantity"]["precision"]
    assert memo.error(consumed_part(broken)) is None
    assert validator.calls == 2


def test_elements_that_are_not_checked_do_not_make_a_new_entry() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(100, validator)
    plain = creatinine(1.1)
    annotated = creatinine(1.1, text={"status": "generated", "div": "<div>1.1</div>"})
    memo.error(consumed_part(plain))
    memo.error(consumed_part(annotated))
    assert validator.calls == 1


def test_the_least_recently_used_result_leaves_first_and_capacity_holds() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(2, validator)
    a, b, c = (consumed_part(creatinine(value)) for value in (1.0, 2.0, 3.0))
    memo.error(a)
    memo.error(b)
    memo.error(a)  # a is now the most recently used
    memo.error(c)  # b leaves
    assert len(memo) == 2
    calls = validator.calls
    memo.error(a)
    assert validator.calls == calls
    memo.error(b)
    assert validator.calls == calls + 1
    assert len(memo) == 2


def test_content_json_cannot_write_is_validated_every_time_and_not_kept() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(10, validator)
    huge = consumed_part(creatinine(1.0))
    huge["valueQuantity"]["value"] = 10**30  # beyond what orjson writes
    assert content_digest(huge) is None
    first = memo.error(huge)
    assert memo.error(huge) == first
    assert validator.calls == 2
    assert len(memo) == 0


def test_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ValidationMemo(0, part_error)


def test_threads_sharing_a_memo_get_the_right_results() -> None:
    validator = CountingValidator()
    memo = ValidationMemo(50, validator)
    parts = [consumed_part(creatinine(float(value))) for value in range(40)]
    broken = consumed_part(creatinine(9.0))
    broken["valueQuantity"]["precision"] = 2
    parts.append(broken)
    expected = [part_error(part) for part in parts]
    failures: list[str] = []

    def work() -> None:
        for _ in range(5):
            for part, want in zip(parts, expected, strict=True):
                if memo.error(part) != want:
                    failures.append(orjson.dumps(part).decode())

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures
    assert len(memo) == len(parts)
    # a result computed twice at once is possible, never more often than there are threads
    assert len(parts) <= validator.calls <= len(parts) * 6


# Mapping with a memo


def map_with(record: PatientRecord, memo: ValidationMemo | None, index_time: datetime) -> Any:
    record.validation = ValidationCache(memo)
    return map_patient(record, SPEC, index_time)


def last_encounter_end(record: PatientRecord) -> datetime:
    ends = [resource_time(encounter) for encounter in record.of_type("Encounter")]
    return max(end for end in ends if end is not None)


def synthea_records() -> list[tuple[str, bytes]]:
    paths = sorted(samples_folder("synthea").glob("*.json"))
    return [(path.stem, path.read_bytes()) for path in paths]


def test_every_synthea_patient_maps_the_same_with_the_memo_cold_and_warm() -> None:
    memo = ValidationMemo(100_000, part_error)
    checked = 0
    for name, raw in synthea_records():
        [plain] = records_from_bundle(orjson.loads(raw))
        index_time = last_encounter_end(plain)
        expected = list(comparable(map_patient(plain, SPEC, index_time)))
        misses = memo.misses
        [cold] = records_from_bundle(orjson.loads(raw))
        cold_row = map_with(cold, memo, index_time)
        assert list(comparable(cold_row)) == expected, name
        validated = cold_row.validated_resources
        assert memo.misses - misses <= validated
        [warm] = records_from_bundle(orjson.loads(raw))  # new objects, the same content
        hits, misses = memo.hits, memo.misses
        warm_row = map_with(warm, memo, index_time)
        assert list(comparable(warm_row)) == expected, name
        assert memo.misses == misses, f"{name}: content validated before was validated again"
        assert memo.hits - hits == warm_row.validated_resources == validated
        checked += 1
    assert checked >= 10


def test_an_invalid_resource_gives_its_note_from_the_memo_too() -> None:
    memo = ValidationMemo(100, part_error)
    broken = creatinine(4.0)
    broken["valueQuantity"]["precision"] = 2
    good = observation(CREATININE_SERUM, 1.1, "mg/dL", "2024-01-10T08:00:00Z")
    for _ in range(2):  # cold, then from the memo
        [record] = records_from_bundle(collection(patient(), copy.deepcopy(good), broken))
        row = map_with(record, memo, INDEX)
        assert row.values["creatinine_last"] == 1.1
        notes = [note for note in row.notes if note.code == "invalid_resource"]
        assert [note.resource for note in notes] == ["Observation/c1"]
    assert memo.hits >= 2


def test_hook_record_takes_the_memo_for_its_validation() -> None:
    memo = ValidationMemo(100, part_error)
    prefetch = {
        "patient": patient(),
        "observations": collection(creatinine(1.1)) | {"type": "searchset"},
    }
    for _ in range(2):
        record = hook_record(prefetch, {"patientId": "p1"}, memo)
        map_patient(record, SPEC, INDEX)
    assert memo.misses >= 1
    assert memo.hits == memo.misses
