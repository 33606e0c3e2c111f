"""The drift report on seeded audit stores whose features are drawn from the bundled package's
reference: planted shifts and missingness are found in the right feature and buckets only,
nothing is flagged without a plant, the SQL bin counts equal Python's on every database, and
suppression, formats, errors, access control and logging."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from app.access.tokens import create_token
from app.audit.tables import AccessRecord
from app.factory import BUNDLED_MODELS, create_app
from app.models.package import ModelPackage, load_packages
from app.reports.drift_queries import DriftQuery, drift_counts
from app.reports.seed import Drift, SeedConfig, draw_cohort, draw_features, seed_store
from app.settings import Settings
from fairness import columns as C
from fairness.drift import ALL, MISSING, SCORE, drift_report
from tests.support.api_tokens import bearer
from tests.support.servers import serve_on_loopback

MODEL = "readmission-30d"
START, END = "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"
PLANTED = datetime(2026, 2, 16, tzinfo=UTC)  # a Monday
Serve = Callable[[], Any]


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    return load_packages(BUNDLED_MODELS)[0]


@pytest.fixture
def serve(make_settings: Callable[..., Settings], package: ModelPackage) -> Serve:
    @contextmanager
    def run() -> Iterator[tuple[str, httpx.Client]]:
        app = create_app(make_settings(), packages=[package])
        with serve_on_loopback(app) as base_url, httpx.Client(timeout=30) as http:
            yield f"{base_url}/reports/drift", http

    return run


def seeded(package: ModelPackage, **overrides: Any) -> SeedConfig:
    values = {"predictions": 2000, "reference": package.reference["features"], **overrides}
    return SeedConfig(**values)


def levels(rows: list[dict[str, Any]], feature: str) -> dict[str, Any]:
    return {row["bucket"]: row for row in rows if row[C.FEATURE] == feature}


def test_a_planted_shift_alerts_on_that_feature_after_its_date_only(
    serve: Serve, engine: Any, package: ModelPackage
) -> None:
    drift = Drift("age_years", PLANTED, shift=1.0)
    seed_store(engine, seeded(package, seed=3, drifts=(drift,)))
    officer = create_token(engine, "safety-1", "safety_officer")
    window = {"model": MODEL, "start": START, "end": END}
    with serve() as (url, http):
        weekly = http.get(url, params=window, headers=bearer(officer))
        exported = http.get(url, params={**window, "format": "csv"}, headers=bearer(officer))
    assert weekly.status_code == 200, weekly.text
    report = weekly.json()["report"]
    assert report["thresholds"]["psi_alert"] == 0.25 and report["thresholds"]["epsilon"] == 1e-4
    assert report["latest_complete_bucket"] == "2026-03-23"
    age = levels(report["features"], "age_years")
    powered = [b for b, row in age.items() if b != ALL and row[C.PSI_LEVEL] != "underpowered"]
    after = [bucket for bucket in powered if bucket >= PLANTED.date().isoformat()]
    assert len(after) == 6 and len(powered) >= 12
    assert all(age[bucket][C.PSI_LEVEL] == "alert" for bucket in after)
    assert all(age[bucket][C.PSI_LEVEL] != "alert" for bucket in set(powered) - set(after))
    others = [row for row in report["features"] if row[C.FEATURE] != "age_years"]
    assert not [row for row in others if row[C.PSI_LEVEL] == "alert" or row[C.MISSING_ALERT]]
    alerts = {(alert[C.FEATURE], alert["bucket"], alert["kind"]) for alert in report["alerts"]}
    assert alerts == {("age_years", "2026-03-23", "psi"), ("age_years", ALL, "psi")}
    assert report[C.DRIFTING_SHARE] == pytest.approx(1 / 25) and not report[C.DRIFT_ALERT]
    flags = levels([{**row, C.FEATURE: ""} for row in report["flag_rate"]], "")
    assert flags[ALL][C.N] == 2000 and 0.1 < flags[ALL][C.EXPECTED_FLAG_RATE] < 0.3
    assert levels(report["score"], SCORE)[ALL][C.N] == 2000

    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    sections = Counter(row["section"] for row in table)
    assert sections == {
        "feature": len(report["features"]),
        "score": len(report["score"]),
        "flag_rate": len(report["flag_rate"]),
        "alert": 2,
    }
    with engine.connect() as connection:
        assert len(connection.execute(select(AccessRecord.actor)).all()) == 2


def test_planted_missingness_alerts_as_missingness_drift(
    engine: Any, package: ModelPackage
) -> None:
    drift = Drift("albumin_last", PLANTED, missing_rate=0.6)
    config = seeded(package, seed=5, model="missing", drifts=(drift,))
    seed_store(engine, config)
    query = DriftQuery(
        "missing", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    )
    cells, flags = drift_counts(engine, query, package.reference)
    complete = sorted({b for b, _, _ in flags if query.complete(b, datetime.now(UTC))})
    report = drift_report(cells, flags, package.reference, complete)
    albumin = levels(report["features"], "albumin_last")
    assert all(
        row[C.MISSING_ALERT] for b, row in albumin.items() if "2026-02-16" <= b < "2026-03-30"
    )
    assert not any(
        row[C.MISSING_ALERT] for b, row in albumin.items() if "2026-01-05" <= b < "2026-02-16"
    )
    alerts = {(alert[C.FEATURE], alert["kind"]) for alert in report["alerts"]}
    assert alerts == {("albumin_last", "missing")}


def test_nothing_planted_raises_no_alert_across_twenty_seeds(
    engine: Any, package: ModelPackage
) -> None:
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for seed in range(20):
        model = f"null-{seed}"
        seed_store(engine, seeded(package, seed=seed, model=model, start=start, days=28))
        query = DriftQuery(model, start, start + timedelta(days=28))
        cells, flags = drift_counts(engine, query, package.reference)
        complete = sorted({b for b, _, _ in flags if query.complete(b, datetime.now(UTC))})
        report = drift_report(cells, flags, package.reference, complete)
        assert report["latest_complete_bucket"] == "2026-01-26"
        assert report["alerts"] == [] and not report[C.DRIFT_ALERT], seed


def expected_cells(config: SeedConfig, package: ModelPackage, window: str) -> Counter:
    """(bucket, feature, bin) counts computed in Python from the seeded values."""
    cohort = draw_cohort(config)
    features = draw_features(config, cohort)
    found: Counter = Counter()
    for i, offset in enumerate(cohort["offset"]):
        day = (config.start + timedelta(seconds=float(offset))).date()
        first = day - timedelta(days=day.weekday()) if window == "week" else day.replace(day=1)
        for name, values in features.items():
            edges = package.reference["features"][name]["edges"]
            value = values[i]
            found[
                (
                    first.isoformat(),
                    name,
                    MISSING
                    if np.isnan(value)
                    else int(np.searchsorted(edges, value, side="right")),
                )
            ] += 1
    return found


@pytest.mark.parametrize("window", ["week", "month"])
def test_json_extraction_counts_equal_python_on_every_database(
    engine: Any, package: ModelPackage, window: str
) -> None:
    start = datetime(2026, 1, 25, 18, tzinfo=UTC)  # spans a Monday and a month's first day
    drift = Drift("hba1c_last", start, missing_rate=0.9)
    config = seeded(package, predictions=300, seed=7, start=start, days=10, drifts=(drift,))
    seed_store(engine, config)
    query = DriftQuery(config.model, start, start + timedelta(days=10), window)
    cells, _ = drift_counts(engine, query, package.reference)
    counted = Counter({(b, f, i): n for b, f, i, n in cells if f != SCORE})
    expected = expected_cells(config, package, window)
    assert counted == expected
    assert len({key[0] for key in expected}) >= 2 and any(key[2] == MISSING for key in expected)


def test_reads_need_a_safety_officer_small_buckets_are_suppressed_and_reads_are_logged(
    serve: Serve, engine: Any, package: ModelPackage
) -> None:
    config = seeded(package, predictions=200, seed=1)
    seed_store(engine, config)
    officer = create_token(engine, "safety-1", "safety_officer")
    admin = create_token(engine, "admin-1", "admin")
    ingest = create_token(engine, "lab-feed", "ingest")
    fifth = config.start + timedelta(seconds=float(draw_cohort(config)["offset"][5]))
    good = {"model": MODEL, "start": START, "end": END}
    tiny = {**good, "end": fifth.isoformat()}
    bad = [
        {**good, "window": "day"},
        {**good, "format": "xml"},
        {**good, "model": "no-such-model"},
        {**good, "start": END, "end": START},
        {**good, "feature_share": 0},
        {**good, "missing_difference": 2},
    ]
    with serve() as (url, http):
        anonymous = http.get(url, params=good)
        refused = http.get(url, params=good, headers=bearer(ingest))
        small = http.get(url, params=tiny, headers=bearer(officer))
        monthly = http.get(url, params={**good, "window": "month"}, headers=bearer(admin))
        invalid = [http.get(url, params=p, headers=bearer(officer)) for p in bad]
    assert (anonymous.status_code, refused.status_code) == (401, 403)
    assert small.status_code == 200 and monthly.status_code == 200
    report = small.json()["report"]
    rows = [*report["features"], *report["score"], *report["flag_rate"]]
    assert rows and all(row[C.N] == C.SUPPRESSED for row in rows)
    assert all(row.get(C.PSI, C.SUPPRESSED) == C.SUPPRESSED for row in rows)
    assert report["alerts"] == [] and report["latest_complete_bucket"] is None
    months = [row["bucket"] for row in monthly.json()["report"]["flag_rate"]]
    assert months == ["2026-01-01", "2026-02-01", "2026-03-01", ALL]
    for response in invalid:
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    with engine.connect() as connection:
        logged = connection.execute(select(AccessRecord.actor, AccessRecord.action)).all()
    assert sorted(logged) == [("admin-1", "drift report"), ("safety-1", "drift report")]
