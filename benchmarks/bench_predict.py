"""Scoring benchmark: features → calibrated risk + SHAP drivers + card, for one request.

Uses the bundled package (or BEDSIDE_MODEL_DIR) and rows mapped from the Synthea samples.
Reports the median and p99 over repeated calls, one thread, in-process.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import orjson

from app.factory import BUNDLED_MODELS
from app.models.card import risk_card
from app.models.package import load_packages
from app.models.predictor import Predictor
from benchmarks.bench_mapping import last_encounter, percentile
from fhir_mappers.mapper import map_patient
from fhir_mappers.record import records_from_bundle

REPEATS = int(os.environ.get("BENCH_REPEATS", "200"))


def main() -> int:
    samples = os.environ.get("BEDSIDE_FHIR_SAMPLES")
    if not samples:
        print("set BEDSIDE_FHIR_SAMPLES to the fhir-samples folder", file=sys.stderr)
        return 2
    [package] = load_packages(Path(os.environ.get("BEDSIDE_MODEL_DIR", BUNDLED_MODELS)))
    predictor = Predictor(package)
    rows = []
    for path in sorted((Path(samples) / "synthea").glob("*.json")):
        [record] = records_from_bundle(orjson.loads(path.read_bytes()))
        index_time, encounter = last_encounter(record)
        rows.append(map_patient(record, package.spec, index_time, encounter))
    predict_ms, card_ms = [], []
    for _ in range(REPEATS):
        for row in rows:
            started = time.perf_counter()
            prediction = predictor.predict(row)
            scored = time.perf_counter()
            risk_card(package, prediction, "https://bedside.example").to_wire()
            done = time.perf_counter()
            predict_ms.append((scored - started) * 1000)
            card_ms.append((done - started) * 1000)
    print(f"{package.name} v{package.version}: {len(rows)} rows × {REPEATS} runs, one thread")
    print(
        f"  predict + SHAP        p50 {statistics.median(predict_ms):.3f} ms"
        f"  p99 {percentile(predict_ms, 0.99):.3f} ms"
    )
    print(
        f"  predict + SHAP + card p50 {statistics.median(card_ms):.3f} ms"
        f"  p99 {percentile(card_ms, 0.99):.3f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
