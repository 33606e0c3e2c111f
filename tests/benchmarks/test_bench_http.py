"""``benchmarks/bench_http.py`` itself: statistics, verdicts, request bodies, floor, a tiny run."""

from __future__ import annotations

import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from app.factory import BUNDLED_MODELS
from app.models.package import ModelPackage, load_packages
from benchmarks import bench_http
from benchmarks.bench_http import HOOKS, PATIENT_PLACEHOLDER, PLACEHOLDER, Result, Sample
from fhir_mappers.templates import prefetch_templates
from tests.support.samples import samples_folder

ROOT = Path(__file__).resolve().parents[2]
PATIENT = "6f1c2a4e-0000-4000-8000-000000000001"
LOINC = "http://loinc.org"
TEMPLATES = {
    "patient": "Patient/{{context.patientId}}",
    "encounter": "Encounter/{{context.encounterId}}",
    "observations": "Observation?patient={{context.patientId}}"
    f"&code={LOINC}|718-7,{LOINC}|8480-6",
    "conditions": "Condition?patient={{context.patientId}}",
    "encounters": "Encounter?patient={{context.patientId}}",
}


# --- statistics ----------------------------------------------------------------------------


def test_percentile_is_the_value_where_inclusive_quantiles_fall_on_one() -> None:
    values = [float(v) for v in range(101)]  # q·(n-1) is a whole index: no interpolation
    random.Random(7).shuffle(values)
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for q, expected in ((0.5, 50.0), (0.95, 95.0), (0.99, 99.0)):
        assert bench_http.percentile(values, q) == cuts[round(q * 100) - 1] == expected
    assert bench_http.percentile(values, 0.0) == 0.0
    assert bench_http.percentile(values, 1.0) == 100.0


def test_percentile_is_numpy_nearest_rank_on_any_size() -> None:
    rng = random.Random(1)
    for n in (*range(1, 40), 200, 300, 301):
        values = [rng.uniform(0, 100) for _ in range(n)]
        for q in (0.5, 0.95, 0.99):
            assert bench_http.percentile(values, q) == np.quantile(values, q, method="nearest")


def test_rss_growth_compares_the_medians_of_the_first_and_last_tenth() -> None:
    rss = [100, 104, *[500] * 16, 112, 110]  # 20 samples: 2 at each end
    assert bench_http.rss_growth(rss) == (102, 111, pytest.approx(900 / 102))
    assert bench_http.rss_growth([200, 900, 300, 210]) == (200, 210, pytest.approx(5.0))


def test_result_line_reports_percentiles_rate_errors_and_cores() -> None:
    latencies = [float(v) for v in range(101)]
    random.Random(3).shuffle(latencies)
    result = Result(latencies, Counter({200: 90, 204: 6, 0: 4}), 2.0, 0.5, [1.0, 0.5])
    assert " ".join(result.line().split()) == (
        "p50 50.0 p95 95.0 p99 99.0 ms 45.0 req/s n 90 ERRORS {0: 4, 204: 6} "
        "cores: client 0.25 server 0.75 (0.50 + 0.25)"
    )


def test_result_line_without_answers_does_not_fail() -> None:
    line = " ".join(Result(wall=1.0).line().split())
    assert line.startswith("p50 nan p95 nan p99 nan ms 0.0 req/s n 0 cores")
    assert "ERRORS" not in line


# --- verdicts ------------------------------------------------------------------------------


def _open(p50: float, p99: float) -> Result:
    """101 latencies whose median is ``p50`` and 99th percentile ``p99``."""
    return Result([p50] * 51 + [p99] * 50, Counter({200: 101}), 2.0)


@pytest.fixture
def databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_http, "DATABASES", ("sqlite", "postgresql"))
    monkeypatch.setattr(bench_http, "SOAK_SECONDS", 600.0)


@pytest.mark.usefixtures("databases")
@pytest.mark.parametrize(
    ("p50", "p99", "line"),
    [
        (10.0, 40.0, "p50 10.0 ms (≤ 10: met), p99 40.0 ms (≤ 40: met)"),
        (10.1, 39.0, "p50 10.1 ms (≤ 10: MISSED), p99 39.0 ms (≤ 40: met)"),
        (2.0, 40.1, "p50 2.0 ms (≤ 10: met), p99 40.1 ms (≤ 40: MISSED)"),
    ],
)
def test_open_loop_verdicts(p50: float, p99: float, line: str) -> None:
    summary = {"sqlite open": _open(p50, p99)}
    assert bench_http.verdicts(summary) == ["\n## targets", f"sqlite: open loop {line}"]


@pytest.mark.usefixtures("databases")
@pytest.mark.parametrize(
    ("statuses", "wall", "line"),
    [
        ({200: 600}, 2.0, "max 300.0 req/s (≥ 300: met)"),
        ({200: 299}, 1.0, "max 299.0 req/s (≥ 300: MISSED)"),
        ({200: 599}, 2.0, "max 299.5 req/s (≥ 300: MISSED)"),  # not shown as 300 and missed
        ({200: 290, 204: 20, 0: 5}, 1.0, "max 290.0 req/s (≥ 300: MISSED)"),  # only cards count
    ],
)
def test_throughput_verdicts(statuses: dict[int, int], wall: float, line: str) -> None:
    summary = {"postgresql max": Result([5.0], Counter(statuses), wall)}
    assert bench_http.verdicts(summary) == ["\n## targets", f"postgresql: {line}"]


@pytest.mark.usefixtures("databases")
@pytest.mark.parametrize(
    ("growth", "line"),
    [
        (4.99, "RSS growth +4.99% over 600 s (< 5%: met)"),
        (5.0, "RSS growth +5.00% over 600 s (< 5%: MISSED)"),
        (-2.5, "RSS growth -2.50% over 600 s (< 5%: met)"),
    ],
)
def test_rss_growth_verdicts(growth: float, line: str) -> None:
    summary = {"soak": ("sqlite", 1.0, 1.0, growth, Result(), 1)}
    assert bench_http.verdicts(summary) == ["\n## targets", f"sqlite: {line}"]


@pytest.mark.usefixtures("databases")
def test_verdicts_on_rounded_values_targets_from_the_table_and_phases_without_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verdict agrees with the number it prints; the limits shown are TARGETS'; an open loop
    that answered nothing, or a soak that could not run, is a miss, not a crash or a pass."""
    assert bench_http.verdicts({"sqlite open": _open(10.04, 12.0)})[1].startswith(
        "sqlite: open loop p50 10.0 ms (≤ 10: met)"
    )
    monkeypatch.setitem(bench_http.TARGETS, "open_p50_ms", 8.0)
    assert "p50 9.0 ms (≤ 8: MISSED)" in bench_http.verdicts({"sqlite open": _open(9.0, 12.0)})[1]
    assert bench_http.verdicts({"sqlite open": Result()})[1] == (
        "sqlite: open loop answered nothing (p50 ≤ 8: MISSED)"
    )
    assert bench_http.verdicts({"soak": None})[1] == (
        "RSS growth not measured: the soak did not run (< 5%: MISSED)"
    )


@pytest.mark.usefixtures("databases")
def test_verdicts_follow_the_databases_order_and_skip_what_was_not_run() -> None:
    summary = {"postgresql open": _open(3.0, 9.0), "sqlite max": Result([], Counter({200: 700}), 2)}
    assert bench_http.verdicts(summary) == [
        "\n## targets",
        "sqlite: max 350.0 req/s (≥ 300: met)",
        "postgresql: open loop p50 3.0 ms (≤ 10: met), p99 9.0 ms (≤ 40: met)",
    ]
    assert bench_http.verdicts({}) == ["\n## targets"]


# --- request bodies (synthetic) ------------------------------------------------------------


def test_relative_rewrites_bundle_references_only() -> None:
    bundle = {
        "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient", "id": "a"}},
            {"fullUrl": "urn:uuid:b", "resource": {"resourceType": "Encounter", "id": "b"}},
            {
                "fullUrl": "urn:uuid:c",
                "resource": {
                    "resourceType": "Observation",
                    "id": "c",
                    "subject": {"reference": "urn:uuid:a"},
                    "encounter": {"reference": "urn:uuid:b"},
                    "hasMember": [{"reference": "urn:uuid:elsewhere"}],
                    "note": [{"text": "urn:uuid:a"}],
                },
            },
        ]
    }
    *_, observation = bench_http._relative(bundle)
    assert observation["subject"] == {"reference": "Patient/a"}
    assert observation["encounter"] == {"reference": "Encounter/b"}
    assert observation["hasMember"] == [{"reference": "urn:uuid:elsewhere"}]
    assert observation["note"] == [{"text": "urn:uuid:a"}]


def _encounter(id_: str, code: str, start: str, end: str | None = None) -> dict[str, Any]:
    period = {"start": start} if end is None else {"start": start, "end": end}
    return {"resourceType": "Encounter", "id": id_, "class": {"code": code}, "period": period}


def _observation(id_: str, *codes: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "subject": {"reference": f"Patient/{PATIENT}"},
        "code": {"coding": [{"system": LOINC, "code": code} for code in codes]},
    }


RESOURCES = [
    {"resourceType": "Patient", "id": PATIENT},
    _encounter("stay", "IMP", "2020-01-01T08:00:00Z", "2020-01-05T12:00:00Z"),
    _encounter("visit", "AMB", "2021-03-01T10:00:00Z", "2021-03-01T11:00:00Z"),
    _encounter("open", "IMP", "2022-06-01T10:00:00Z"),
    _observation("hb", "718-7"),
    _observation("other", "0000-0"),
    _observation("bp", "0000-1", "8480-6"),
    {"resourceType": "Condition", "id": "dx", "subject": {"reference": f"Patient/{PATIENT}"}},
]


def test_index_encounter_is_the_last_finished_stay_else_the_last_finished_encounter() -> None:
    encounters = [r for r in RESOURCES if r["resourceType"] == "Encounter"]
    stay = bench_http._index_encounter(encounters)
    assert (stay["id"], stay["status"], stay["class"]["code"]) == ("stay", "finished", "IMP")
    visit = bench_http._index_encounter([e for e in encounters if e["id"] != "stay"])
    assert (visit["id"], visit["status"], visit["class"]["code"]) == ("visit", "finished", "IMP")
    assert encounters[1]["class"] == {"code": "AMB"}  # the input is left as it was


def test_discharge_body_holds_the_prefetch_of_the_templates() -> None:
    raw = bench_http._body("encounter-discharge", TEMPLATES, RESOURCES)
    assert PATIENT.encode() not in raw  # every occurrence became the placeholder
    body = orjson.loads(raw)
    patient = PATIENT_PLACEHOLDER.decode()
    assert body["hook"] == "encounter-discharge"
    assert body["hookInstance"] == PLACEHOLDER.decode()
    assert body["context"] == {
        "userId": "Practitioner/bench-1",
        "patientId": patient,
        "encounterId": "stay",
    }
    prefetch = body["prefetch"]
    assert list(prefetch) == list(TEMPLATES)  # no medications: not in these templates
    assert prefetch["patient"]["id"] == patient
    assert (prefetch["encounter"]["id"], prefetch["encounter"]["status"]) == ("stay", "finished")
    observations = prefetch["observations"]
    assert [e["resource"]["id"] for e in observations["entry"]] == ["hb", "bp"]
    assert observations["total"] == 2
    assert observations["entry"][0]["fullUrl"] == "Observation/hb"
    assert observations["entry"][0]["resource"]["subject"]["reference"] == f"Patient/{patient}"
    assert [e["resource"]["id"] for e in prefetch["conditions"]["entry"]] == ["dx"]
    encounters = [e["resource"] for e in prefetch["encounters"]["entry"]]
    assert encounters[0] == prefetch["encounter"]
    assert [e["id"] for e in encounters] == ["stay", "visit", "open"]


def test_patient_view_body_is_sent_during_the_stay() -> None:
    body = orjson.loads(bench_http._body("patient-view", TEMPLATES, RESOURCES))
    encounter = body["prefetch"]["encounter"]
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2020-01-01T08:00:00Z"}
    assert body["prefetch"]["encounters"]["entry"][0]["resource"] == encounter


def _ids(body: bytes) -> tuple[str, set[str]]:
    """The hookInstance, and every patient id the body names."""
    parsed = orjson.loads(body)
    prefetch = parsed["prefetch"]
    subject = prefetch["observations"]["entry"][0]["resource"]["subject"]["reference"]
    named = {parsed["context"]["patientId"], prefetch["patient"]["id"], subject.split("/")[1]}
    return parsed["hookInstance"], named


def test_fresh_renews_the_hook_instance_and_keeps_the_patient() -> None:
    body = bench_http._with_patient_id(
        bench_http._body("encounter-discharge", TEMPLATES, RESOURCES), PATIENT.encode()
    )
    (first, patients), (second, again) = _ids(bench_http.fresh(body)), _ids(bench_http.fresh(body))
    assert first != second
    assert uuid.UUID(first).version == uuid.UUID(second).version == 4
    assert patients == again == {PATIENT}


def test_fresh_with_distinct_patients_gives_each_call_a_new_patient(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bench_http, "DISTINCT_PATIENTS", True)
    body = bench_http._with_patient_id(
        bench_http._body("encounter-discharge", TEMPLATES, RESOURCES), PATIENT.encode()
    )
    assert PATIENT_PLACEHOLDER in body
    [first], [second] = _ids(bench_http.fresh(body))[1], _ids(bench_http.fresh(body))[1]
    assert len({first, second, PATIENT, PATIENT_PLACEHOLDER.decode()}) == 4


# --- the process helpers and the rest ------------------------------------------------------


def test_cpu_and_rss_of_a_process() -> None:
    pid = os.getpid()
    before = bench_http.cpu_seconds([pid])
    started = time.process_time()
    while time.process_time() - started < 0.3:
        pass
    [used] = bench_http.cpu_used(before, [pid])
    assert 0.2 <= used <= 1.0
    resident = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    assert bench_http.rss_bytes([pid]) == pytest.approx(resident, rel=0.05)
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    assert bench_http.cpu_seconds([gone.pid]) == [0.0]


@pytest.fixture
def children() -> Iterator[tuple[int, int]]:
    """Two child processes: one whose command line names ``spawn_main``, one that does not."""
    sleep = "import time; time.sleep(60)"
    worker = subprocess.Popen([sys.executable, "-c", sleep, "spawn_main"])
    other = subprocess.Popen([sys.executable, "-c", sleep])
    try:
        yield worker.pid, other.pid
    finally:
        for process in (worker, other):
            process.kill()
            process.wait()


def test_worker_pids_are_the_spawned_children(children: tuple[int, int]) -> None:
    worker, other = children
    found = bench_http.worker_pids(os.getpid())
    assert worker in found
    assert other not in found


def test_server_side_medians_per_column(tmp_path: Path) -> None:
    path = tmp_path / "bedside.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE prediction (map_ms REAL, score_ms REAL, total_ms REAL)")
        url = f"sqlite:///{path}"
        assert bench_http.server_side(url) == "server side: no prediction records"
        rows = [(1.0, 10.0, 100.0), (9.0, 90.0, 900.0), (2.0, 20.0, 200.0)]
        connection.executemany("INSERT INTO prediction VALUES (?, ?, ?)", rows)
    assert bench_http.server_side(url) == (
        "server side (3 prediction records): map p50 2.0 ms, score p50 20.0 ms, "
        "handler before the audit write p50 200.0 ms"
    )


def test_main_needs_the_samples(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BEDSIDE_FHIR_SAMPLES", raising=False)
    assert bench_http.main() == 2
    assert "BEDSIDE_FHIR_SAMPLES" in capsys.readouterr().err


# --- the real samples ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthea() -> Path:
    return samples_folder("synthea")


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    [package] = load_packages(Path(BUNDLED_MODELS))
    return package


@pytest.fixture(scope="module")
def samples(synthea: Path, package: ModelPackage) -> list[Sample]:
    return bench_http.load_samples(synthea, package)


def _bundle_of(synthea: Path, sample: Sample) -> list[dict[str, Any]]:
    [path] = [
        p for p in synthea.glob(f"{sample.name}_*.json") if p.stat().st_size == sample.bundle_bytes
    ]
    return [entry["resource"] for entry in orjson.loads(path.read_bytes())["entry"]]


def test_samples_are_the_smallest_median_and_largest_bundle(
    synthea: Path, samples: list[Sample]
) -> None:
    sizes = [path.stat().st_size for path in synthea.glob("*.json")]
    assert [s.label for s in samples] == ["small", "median", "large"]
    expected = [min(sizes), statistics.median_high(sizes), max(sizes)]
    assert [s.bundle_bytes for s in samples] == expected
    for sample in samples:
        assert _bundle_of(synthea, sample)  # the name is the file's, without its id


def _index_encounter_id(resources: list[dict[str, Any]]) -> str:
    """The last finished inpatient stay's id; else the last finished encounter's (Chet Hoeger)."""
    finished = [
        r for r in resources if r["resourceType"] == "Encounter" and "end" in r.get("period", {})
    ]
    stays = [r for r in finished if r["class"]["code"] == "IMP"]
    return max(stays or finished, key=lambda r: datetime.fromisoformat(r["period"]["end"]))["id"]


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "reference":
                yield item
            else:
                yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@pytest.mark.parametrize("hook", HOOKS)
def test_sample_bodies_are_what_an_ehr_sends(
    synthea: Path, package: ModelPackage, samples: list[Sample], hook: str
) -> None:
    templates = prefetch_templates(package.spec, hook)
    wanted = set(templates["observations"].split("code=")[1].split(","))
    for sample in samples:
        resources = _bundle_of(synthea, sample)
        [patient] = [r["id"] for r in resources if r["resourceType"] == "Patient"]
        body = orjson.loads(sample.bodies[hook])
        prefetch = body["prefetch"]
        assert body["hookInstance"] == PLACEHOLDER.decode()
        assert body["context"]["patientId"] == prefetch["patient"]["id"] == patient
        assert body["context"]["encounterId"] == prefetch["encounter"]["id"]
        assert prefetch["encounter"]["id"] == _index_encounter_id(resources)
        assert prefetch["encounter"]["class"]["code"] == "IMP"
        finished = "end" in prefetch["encounter"]["period"]
        assert finished is (hook == "encounter-discharge")
        assert set(prefetch) == set(templates)
        observations = [
            r
            for r in resources
            if r["resourceType"] == "Observation"
            and {f"{c['system']}|{c['code']}" for c in r["code"]["coding"]} & wanted
        ]
        assert prefetch["observations"]["total"] == len(observations) == sample.observations > 0
        references = set(_references(prefetch))
        assert f"Patient/{patient}" in references
        assert not [r for r in references if r.startswith("urn:uuid:")]


def test_the_floor_scores_every_sample_and_hook(
    monkeypatch: pytest.MonkeyPatch, package: ModelPackage, samples: list[Sample]
) -> None:
    monkeypatch.setattr(bench_http, "FLOOR_REPEATS", 2)
    for sample in samples:
        for hook in HOOKS:
            times = bench_http.floor_ms(package, hook, sample.bodies[hook])
            assert len(times) == 2
            assert all(0 < t < 10_000 for t in times)


# --- one tiny end-to-end run ---------------------------------------------------------------

REQUESTS = 4
KNOBS = {
    "BENCH_DATABASES": "sqlite",
    "BENCH_PHASES": "sweep,open,max,soak",
    "BENCH_HTTP_REQUESTS": str(REQUESTS),
    "BENCH_HTTP_CELL_SECONDS": "5",
    "BENCH_FLOOR_REPEATS": "3",
    "BENCH_OPEN_RATE": "20",
    "BENCH_OPEN_SECONDS": "1",
    "BENCH_MAX_CONCURRENCY": "4",
    "BENCH_MAX_SECONDS": "1",
    "BENCH_SOAK_SECONDS": "2",
    "BENCH_SOAK_DATABASE": "sqlite",
    "BENCH_DISTINCT_PATIENTS": "0",
}
RESULT = (
    r"p50 +(?P<p50>[\d.]+) +p95 +(?P<p95>[\d.]+) +p99 +(?P<p99>[\d.]+) ms +"
    r"(?P<rps>[\d.]+) req/s +n (?P<n>\d+)(?P<errors> ERRORS .*?)? +cores: client [\d.]+ server"
)


def _results(pattern: str, output: str) -> list[dict[str, str]]:
    """Every line of ``output`` that ``pattern`` then a result matches, checked to be sane."""
    found = [m.groupdict() for m in re.finditer(f"^{pattern}{RESULT}", output, re.MULTILINE)]
    for result in found:
        assert result["errors"] is None, result
        assert 0 < float(result["p50"]) <= float(result["p95"]) <= float(result["p99"])
        assert float(result["rps"]) > 0
        assert int(result["n"]) > 0
    return found


@pytest.fixture(scope="module")
def tiny_run(synthea: Path) -> str:
    environment = {**os.environ, **KNOBS, "BEDSIDE_FHIR_SAMPLES": str(synthea.parent)}
    command = [sys.executable, "-m", "benchmarks.bench_http"]
    run = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=150
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout


@pytest.mark.timeout(180)
def test_a_tiny_run_answers_every_request_with_a_card(tiny_run: str) -> None:
    floors = re.findall(r"^  (\S+) +p50 +([\d.]+) ms +p99 +([\d.]+) ms$", tiny_run, re.M)
    assert sorted(hook for hook, _, _ in floors) == sorted(HOOKS * 3)
    assert all(0 < float(p50) <= float(p99) for _, p50, p99 in floors)
    cells = _results(r"(?P<hook>\S+) +(?P<label>\w+) +c=(?P<c>\d+) +", tiny_run)
    assert {(c["hook"], c["label"], int(c["c"])) for c in cells} == {
        (hook, label, c)
        for hook in HOOKS
        for label in ("small", "median", "large")
        for c in (1, 8, 32)
    }
    assert all(int(cell["n"]) == REQUESTS for cell in cells)
    assert len(re.findall(r"c=1 .* ×[\d.]+ floor$", tiny_run, re.M)) == 6
    warm_up = 3 * len(HOOKS) * 20
    assert f"server side ({warm_up + len(cells) * REQUESTS} prediction records)" in tiny_run


@pytest.mark.timeout(180)
def test_a_tiny_run_reports_open_loop_throughput_soak_and_verdicts(tiny_run: str) -> None:
    [open_] = _results(r"open loop 20/s 1 s, median discharge: ", tiny_run)
    assert int(open_["n"]) == 20
    [maximum] = _results(r"max throughput c=4 1 s, median discharge: ", tiny_run)
    [soak] = _results(r"soak 2 s at \d+/s .*?: ", tiny_run)
    assert int(soak["n"]) > 0
    [growth] = re.findall(r"growth ([+-][\d.]+)% \(\d+ samples\)$", tiny_run, re.M)
    opened, throughput, rss = tiny_run.split("\n## targets\n")[1].splitlines()
    p50, p50_met, p99, p99_met = _target(
        r"sqlite: open loop p50 (.+) ms \(≤ 10: (.+)\), p99 (.+) ms \(≤ 40: (.+)\)", opened
    )
    assert (p50, p50_met) == (open_["p50"], _met(float(p50) <= 10))
    assert (float(p99), p99_met) == (float(open_["p99"]), _met(float(p99) <= 40))
    rps, rps_met = _target(r"sqlite: max ([\d.]+) req/s \(≥ 300: (.+)\)", throughput)
    assert abs(float(rps) - float(maximum["rps"])) <= 0.1
    assert rps_met == _met(float(rps) >= 300)
    assert _target(r"sqlite: RSS growth (.+)% over 2 s \(< 5%: (.+)\)", rss) == (
        growth,
        _met(float(growth) < 5),
    )


def _target(pattern: str, line: str) -> tuple[str, ...]:
    match = re.fullmatch(pattern, line)
    assert match, line
    return match.groups()


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"
