"""Mapping benchmark: time per patient for the Synthea and HL7 samples, bulk NDJSON throughput.

Run with ``make bench`` (BEDSIDE_FHIR_SAMPLES must point at the fhir-samples folder).
Reports medians and p99 over repeated runs; this machine is shared and noisy.
"""

from __future__ import annotations

import gc
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from fhir_mappers.fhirtime import parse_fhir_datetime
from fhir_mappers.mapper import InvalidPatient, map_patient
from fhir_mappers.record import (
    PatientRecord,
    entries_of,
    records_from_bundle,
    records_from_ndjson,
    records_from_resources,
    typed_key,
)
from fhir_mappers.spec import FeatureSpec, load_spec

SPEC_PATH = Path(__file__).resolve().parents[1] / "fhir_mappers" / "specs" / "readmission_30d.yaml"
REPEATS = int(os.environ.get("BENCH_REPEATS", "30"))
BULK_COPIES = int(os.environ.get("BENCH_BULK_COPIES", "20"))
_UUID = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def last_encounter(record: PatientRecord) -> tuple[Any, Any]:
    """Index at the end of the patient's last encounter (a discharge-like moment)."""
    ends = [
        (parse_fhir_datetime((e.get("period") or {}).get("end", "")), e)
        for e in record.of_type("Encounter")
    ]
    ends = [(end, e) for end, e in ends if end is not None]
    if not ends:
        return None, None
    return max(ends, key=lambda pair: pair[0])


def bench_synthea(folder: Path, spec: FeatureSpec) -> None:
    per_patient: list[tuple[float, float, int, str]] = []
    all_total: list[float] = []
    all_map: list[float] = []
    for path in sorted(folder.glob("*.json")):
        raw = path.read_bytes()
        totals, maps = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            [record] = records_from_bundle(orjson.loads(raw))
            index_time, encounter = last_encounter(record)
            mapped = time.perf_counter()
            map_patient(record, spec, index_time, encounter)
            done = time.perf_counter()
            totals.append((done - started) * 1000)
            maps.append((done - mapped) * 1000)
        resources = sum(1 for _ in entries_of(orjson.loads(raw)))
        per_patient.append(
            (statistics.median(totals), statistics.median(maps), resources, path.name)
        )
        all_total.extend(totals)
        all_map.extend(maps)
    per_patient.sort()
    median_patient = per_patient[len(per_patient) // 2]
    print(f"Synthea: {len(per_patient)} patients × {REPEATS} runs (parse + group + map, ms)")
    for label, runs in (("parse+group+map", all_total), ("map only", all_map)):
        print(f"  {label:16} p50 {percentile(runs, 0.5):6.2f}  p99 {percentile(runs, 0.99):6.2f}")
    print(
        f"  median patient ({median_patient[2]} resources): total {median_patient[0]:.2f} ms, "
        f"map {median_patient[1]:.2f} ms"
    )
    largest = max(per_patient, key=lambda row: row[2])
    print(
        f"  largest patient ({largest[2]} resources): "
        f"total {largest[0]:.2f} ms, map {largest[1]:.2f} ms"
    )


def bench_hl7(folder: Path, spec: FeatureSpec) -> None:
    items: list[tuple[str | None, dict[str, Any]]] = []
    for path in sorted(folder.glob("*.json")):
        resource = orjson.loads(path.read_bytes())
        if resource.get("resourceType") == "Bundle":
            items.extend(entries_of(resource))
        else:
            items.append((None, resource))
    index_time = parse_fhir_datetime("2020-01-01T00:00:00Z")
    timings: list[float] = []
    refused = 0
    for _ in range(REPEATS):
        records = records_from_resources(items)
        for record in records:
            started = time.perf_counter()
            try:
                map_patient(record, spec, index_time)
            except InvalidPatient:
                refused += 1
            timings.append((time.perf_counter() - started) * 1000)
    print(
        f"HL7 examples: {len(records)} patients from {len(items)} resources, map ms "
        f"p50 {percentile(timings, 0.5):.2f} p99 {percentile(timings, 0.99):.2f} "
        f"({refused // REPEATS} patients refused as invalid)"
    )


def write_bulk_folder(synthea: Path, target: Path, copies: int) -> int:
    """Write the Synthea bundles ``copies`` times as a Bulk Data export (relative references)."""
    lines: dict[str, list[bytes]] = defaultdict(list)
    for path in sorted(synthea.glob("*.json")):
        bundle = orjson.loads(path.read_bytes())
        aliases = {
            full_url: typed_key(resource)
            for full_url, resource in entries_of(bundle)
            if full_url and typed_key(resource)
        }
        text = orjson.dumps([resource for _, resource in entries_of(bundle)]).decode()
        for alias, key in aliases.items():
            text = text.replace(f'"{alias}"', f'"{key}"')
        for copy in range(copies):
            resources = orjson.loads(_suffix(text, copy))
            for resource in resources:
                lines[resource["resourceType"]].append(orjson.dumps(resource))
    total = 0
    for resource_type, rows in lines.items():
        (target / f"{resource_type}.ndjson").write_bytes(b"\n".join(rows) + b"\n")
        total += len(rows)
    return total


def _suffix(text: str, copy: int) -> str:
    """Make every UUID (and so every id and reference) unique to this copy."""
    return _UUID.sub(rf"\1-{copy}", text)


def bench_bulk(synthea: Path, spec: FeatureSpec) -> None:
    """Throughput over the whole export; types and codes the spec does not read are skipped."""
    with tempfile.TemporaryDirectory() as folder:
        resources = write_bulk_folder(synthea, Path(folder), BULK_COPIES)
        runs = []
        for _ in range(3):
            gc.collect()
            started = time.perf_counter()
            records = records_from_ndjson(Path(folder), spec.resource_types, spec.code_filters)
            read = time.perf_counter()
            for record in records:
                index_time, encounter = last_encounter(record)
                if index_time is not None:
                    map_patient(record, spec, index_time, encounter)
            done = time.perf_counter()
            consumed = sum(len(r) for record in records for r in record.resources.values())
            runs.append((done - started, read - started, done - read, consumed + len(records)))
        elapsed, read_s, map_s, consumed = sorted(runs)[1]
        print(
            f"Bulk NDJSON: {resources} resources ({consumed} of the types the spec reads), "
            f"{len(records)} patients, median of 3 runs:"
        )
        print(
            f"  read+group {resources / read_s:,.0f} resources/s of the export "
            f"({read_s:.2f} s: types and codes the spec does not read are skipped unparsed)"
        )
        print(
            f"  read+group+map {resources / elapsed:,.0f} resources/s of the export, "
            f"{consumed / elapsed:,.0f} read resources/s (map {map_s:.2f} s, "
            f"{map_s / len(records) * 1000:.1f} ms per patient)"
        )


def main() -> int:
    samples = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not samples or not Path(samples).is_dir():
        print("set BEDSIDE_FHIR_SAMPLES to the fhir-samples folder", file=sys.stderr)
        return 2
    spec = load_spec(SPEC_PATH)
    folder = Path(samples)
    # Warm up: imports and the first R4B model build take ~0.2 s once per process.
    [record] = records_from_bundle(
        orjson.loads(next((folder / "synthea").glob("*.json")).read_bytes())
    )
    map_patient(record, spec, *last_encounter(record))
    bench_synthea(folder / "synthea", spec)
    bench_hl7(folder / "hl7-r4-examples", spec)
    bench_bulk(folder / "synthea", spec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
