"""The fast paths of bulk mapping select, validate and map exactly what a plain scan would.

The code index (``PatientRecord.with_codes``), the NDJSON line filter and the paused cycle
collector only make reading and mapping cheaper: each test pins that they change no result.
"""

from __future__ import annotations

import gc
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from fhir_mappers.gcpause import gc_paused
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import (
    PatientRecord,
    Resource,
    read_ndjson_folder,
    records_from_bundle,
    records_from_ndjson,
)
from fhir_mappers.selection import matches, resource_time
from tests.fhir_mappers.test_mapper_real_data import (
    SPEC,
    comparable,
    hl7_records,
    write_bulk_export,
)
from tests.support.fhir_builders import observation, patient
from tests.support.samples import samples_folder

INDEX = datetime(2024, 3, 1, tzinfo=UTC)
_OLD_JSON_CODE = re.compile(rb'"code"\s*:\s*"([^"]*)"')


def synthea_bundles() -> list[Resource]:
    return [orjson.loads(p.read_bytes()) for p in sorted(samples_folder("synthea").glob("*.json"))]


def write_ndjson(folder: Path, *resources: Resource) -> Path:
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    for resource_type, lines in by_type.items():
        (folder / f"{resource_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return folder


def last_encounter_end(record: PatientRecord) -> datetime | None:
    ends = [resource_time(encounter) for encounter in record.of_type("Encounter")]
    return max((end for end in ends if end is not None), default=None)


# The code index


def scanned(
    record: PatientRecord, resource_type: str, codes: frozenset[tuple[str, str]]
) -> list[Resource]:
    """What the index replaces: every resource of the type, own code matched one by one."""
    return [r for r in record.of_type(resource_type) if matches(r.get("code"), codes)]


def test_code_index_selects_what_a_scan_of_every_resource_selects() -> None:
    records = [record for bundle in synthea_bundles() for record in records_from_bundle(bundle)]
    records.extend(hl7_records().values())
    checked = 0
    for record in records:
        for feature in SPEC.features:
            if feature.source is None or feature.codes is None:
                continue
            groups = [SPEC.codes_of(feature.codes)]
            if feature.component:
                groups += [SPEC.codes_of(feature.component), groups[0] | groups[-1]]
            for codes in groups:
                expected = scanned(record, feature.source, codes)
                found = record.with_codes(feature.source, codes)
                assert [id(r) for r in found] == [id(r) for r in expected]
                checked += len(found)
    assert checked > 1000


def test_code_index_ignores_component_codes() -> None:
    panel = observation("85354-9", None, None, "2024-02-01T08:00:00Z")
    panel["component"] = [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}]
    record = PatientRecord(patient(), resources={"Observation": [panel]})
    assert record.with_codes("Observation", {("http://loinc.org", "8480-6")}) == []
    assert record.with_codes("Observation", {("http://loinc.org", "85354-9")}) == [panel]


# The NDJSON line filter


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ('{"code":{"coding":[{"system":"http://loinc.org","code":"2160-0"}]}}', True),
        ('{"code" : {"coding" : [{"code" :  "2160-0"}]}}', True),
        ('{"component":[{"code":{"coding":[{"code":"8480-6"}]}}]}', True),
        ('{"code":{"coding":[{"code":"2160-01"}]}}', False),
        ('{"code":{"coding":[{"code":"12160-0"}]}}', False),
        ('{"code":{"text":"2160-0"},"note":[{"text":"\\"code\\":\\"2160-0\\""}]}', False),
        ('{"code":{"coding":[{"code":"1x2"}]}}', False),  # "1.2" is not a pattern
    ],
)
def test_line_filter_keeps_a_line_exactly_when_a_wanted_code_is_a_code(
    tmp_path: Path, line: str, kept: bool
) -> None:
    (tmp_path / "Observation.ndjson").write_text('{"resourceType":"Observation",' + line[1:])
    filters = {"Observation": {"2160-0", "8480-6", "1.2"}}
    assert bool(list(read_ndjson_folder(tmp_path, code_filters=filters))) is kept


def test_line_filter_keeps_the_lines_the_old_filter_kept(tmp_path: Path) -> None:
    write_bulk_export(synthea_bundles(), tmp_path)
    codes = SPEC.code_filters["Observation"]
    wanted = {code.encode() for code in codes}
    lines = (tmp_path / "Observation.ndjson").read_bytes().splitlines()
    old = [orjson.loads(line) for line in lines if wanted & set(_OLD_JSON_CODE.findall(line))]
    new = [r for _, r in read_ndjson_folder(tmp_path, {"Observation"}, {"Observation": codes})]
    assert new == old
    assert 0 < len(new) < len(lines)


def test_filtered_bulk_read_maps_like_a_full_read(tmp_path: Path) -> None:
    write_bulk_export(synthea_bundles(), tmp_path)
    full = {record.patient_key: record for record in records_from_ndjson(tmp_path)}
    filtered = records_from_ndjson(tmp_path, SPEC.resource_types, SPEC.code_filters)
    assert len(filtered) == len(full) > 20
    for record in filtered:
        index_time = last_encounter_end(record)
        assert index_time is not None
        expected = map_patient(full[record.patient_key], SPEC, index_time)
        assert list(comparable(map_patient(record, SPEC, index_time))) == list(comparable(expected))


# Validation through the bulk path


def test_invalid_resource_in_a_bulk_export_is_skipped_and_reported(tmp_path: Path) -> None:
    broken = observation("2160-0", 4.0, "mg/dL", "2024-02-10T08:00:00Z", observation_id="x")
    broken["valueQuantity"]["precision"] = 2  # Quantity has no such element
    good = observation("2160-0", 1.1, "mg/dL", "2024-01-10T08:00:00Z", observation_id="ok")
    write_ndjson(tmp_path, patient(), good, broken)
    [record] = records_from_ndjson(tmp_path, SPEC.resource_types, SPEC.code_filters)
    row = map_patient(record, SPEC, INDEX)
    assert row.values["creatinine_last"] == 1.1
    assert row.provenance["creatinine_last"].sources == ("Observation/ok",)
    notes = [(n.code, n.resource) for n in row.notes if n.feature == "creatinine_last"]
    assert ("invalid_resource", "Observation/x") in notes


def test_invalid_patient_in_a_bulk_export_is_refused(tmp_path: Path) -> None:
    write_ndjson(tmp_path, patient(birthDate="15/06/1950"))
    [record] = records_from_ndjson(tmp_path, SPEC.resource_types, SPEC.code_filters)
    with pytest.raises(InvalidPatient):
        map_patient(record, SPEC, INDEX)


# The paused cycle collector


@pytest.mark.parametrize("enabled", [True, False])
def test_reading_restores_the_collector_state(tmp_path: Path, enabled: bool) -> None:
    write_ndjson(tmp_path, patient())
    (gc.enable if enabled else gc.disable)()
    try:
        records_from_ndjson(tmp_path)
        assert gc.isenabled() is enabled
        (tmp_path / "Observation.ndjson").write_bytes(b"{not json\n")
        with pytest.raises(orjson.JSONDecodeError):
            records_from_ndjson(tmp_path)
        assert gc.isenabled() is enabled
    finally:
        gc.enable()


def test_overlapping_pauses_resume_the_collector_once_the_last_ends() -> None:
    assert gc.isenabled()
    outer, inner = gc_paused(), gc_paused()
    outer.__enter__()
    inner.__enter__()
    outer.__exit__(None, None, None)  # another thread's read ends first
    assert not gc.isenabled()
    inner.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_frozen_heap_stays_frozen(tmp_path: Path) -> None:
    write_ndjson(tmp_path, patient())
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        records_from_ndjson(tmp_path)
        # Thawing would empty the permanent generation, freezing again would add the parsed
        # records to it; a few frozen objects may still be freed by reference counting
        # meanwhile (an idle writer thread of an earlier test ending, say).
        assert frozen - 100 <= gc.get_freeze_count() <= frozen
    finally:
        gc.unfreeze()
