"""The fairness report through the running service, on seeded audit stores with and without a
planted miscalibration: findings, suppression, formats, errors, access control and logging."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from app.access.tokens import create_token
from app.audit.tables import AccessRecord
from app.factory import BUNDLED_MODELS
from app.models.package import ModelPackage, load_packages
from app.reports.cli import fairness_alerts
from app.reports.queries import FairnessQuery, fairness_counts
from app.reports.seed import Miscalibration, SeedConfig, seed_store
from fairness import columns as C
from fairness.report import fairness_report
from tests.support.api_tokens import bearer

RunBedside = Callable[..., Any]
PLANTED = Miscalibration("race", "Black or African American", 0.5)
START, END = "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"


@pytest.fixture(scope="module")
def packages() -> list[ModelPackage]:
    return load_packages(BUNDLED_MODELS)


def access_count(engine: Any) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(AccessRecord)).scalar_one())


def numbers_in(row: dict[str, Any], skip: set[str]) -> list[str]:
    """The columns of ``row`` that hold a number (CSV: a value that parses as one)."""
    found = []
    for name, value in row.items():
        if name in skip or isinstance(value, bool):
            continue
        try:
            float(value)
            found.append(name)
        except (TypeError, ValueError):
            pass
    return found


def test_the_planted_miscalibration_is_found_and_small_cells_suppressed(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    seed_store(engine, SeedConfig(predictions=12_000, seed=3, miscalibration=PLANTED))
    officer = create_token(engine, "safety-1", "safety_officer")
    window = {"model": "readmission-30d", "start": START, "end": END}
    with run_bedside(packages=packages) as client:
        url = f"{client.base_url}/reports/fairness"
        by_race = client.http.get(
            url, params={**window, "group_by": "race"}, headers=bearer(officer)
        )
        crossed = client.http.get(
            url, params={**window, "group_by": "sex,race"}, headers=bearer(officer)
        )
        exported = client.http.get(
            url, params={**window, "group_by": "sex,race", "format": "csv"}, headers=bearer(officer)
        )
    assert by_race.status_code == 200, by_race.text
    body = by_race.json()
    assert body["versions"][0]["version"] == "1.0.0" and body["predictions"] == 12_000
    assert body["threshold"] == next(b.lower for b in packages[0].bands if b.name == "high")
    assert body["report"]["thresholds"]["min_cell"] == 10
    rows = {row["race"]: row for row in body["report"]["groups"]}
    planted = rows.pop(PLANTED.value)
    assert planted[C.OBSERVED_EXPECTED] > 1.6 and planted[C.CALIBRATION_FLAG] == "critical"
    assert planted[C.TPR + C.RATIO + C.FLAG] == "critical"
    assert {row[C.CALIBRATION_FLAG] for row in rows.values()} <= {"ok", None}
    assert all(0.7 < row[C.OBSERVED_EXPECTED] < 1.4 for row in rows.values() if row[C.N] >= 200)

    groups = crossed.json()["report"]["groups"]
    hidden = [row for row in groups if row[C.N] == C.SUPPRESSED]
    assert hidden, "the seeded store has intersections with fewer than 10 predictions"
    assert all(numbers_in(row, set()) == [] for row in hidden)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    everything = list(csv.DictReader(io.StringIO(exported.text)))
    table = [row for row in everything if row["section"] == "group"]
    assert len(table) == len(groups) + 1  # and the whole population
    context = {"model", "versions", "start", "end", "label", "threshold"}
    hidden_csv = [row for row in table if row[C.N] == C.SUPPRESSED]
    assert len(hidden_csv) == len(hidden)
    assert all(numbers_in(row, context) == [] for row in hidden_csv)
    calibration = crossed.json()["report"]["calibration"]
    in_csv = [row for row in everything if row["section"] == "calibration"]
    assert len(in_csv) == len(calibration) > 0
    hidden_cells = [row for row in in_csv if row[C.N] == C.SUPPRESSED]
    assert hidden_cells, "small intersections have suppressed calibration cells"
    assert all(numbers_in(row, {*context, C.RISK_DECILE}) == [] for row in hidden_cells)
    assert access_count(engine) == 3


@pytest.mark.timeout(600)  # twenty seeded stores
def test_nothing_planted_flags_no_group_for_miscalibration_across_twenty_seeds(
    engine: Any,
) -> None:
    for seed in range(20):
        seed_store(engine, SeedConfig(predictions=2500, seed=seed, model=f"null-{seed}"))
        for group_by in (("race",), ("sex", "race")):
            query = FairnessQuery(
                f"null-{seed}",
                datetime(2026, 1, 1, tzinfo=UTC),
                datetime(2026, 4, 1, tzinfo=UTC),
                group_by,
                threshold=0.237,
            )
            groups, _ = fairness_counts(engine, query)
            report = fairness_report(groups, group_by)
            assert sum(group.n for group in groups) == 2500
            flags = {row[C.CALIBRATION_FLAG] for row in report["groups"]}
            assert flags <= {"ok", None, C.SUPPRESSED}, (seed, group_by)
            body = {"group_by": list(group_by), "report": report}
            assert fairness_alerts(f"null-{seed}", body, "critical") == [], (seed, group_by)


def test_reads_need_a_safety_officer_or_admin_bad_requests_get_400_and_reads_are_logged(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    officer = create_token(engine, "safety-1", "safety_officer")
    admin = create_token(engine, "admin-1", "admin")
    ingest = create_token(engine, "lab-feed", "ingest")
    good = {"model": "readmission-30d", "start": START, "end": END}
    bad = [
        {**good, "group_by": "postcode"},
        {**good, "group_by": "sex,race,language"},
        {**good, "format": "xml"},
        {**good, "model": "no-such-model"},
        {**good, "start": END, "end": START},
        {**good, "start": "yesterday"},
        {**good, "start": "0001-01-01T00:00:00+01:00"},  # before year 1 in UTC
        {**good, "end": "9999-12-31T23:00:00-05:00"},  # after 9999 in UTC
        {**good, "label": "readmission\x00"},
        {**good, "label": "Readmission 30d"},
    ]
    with run_bedside(packages=packages) as client:
        url = f"{client.base_url}/reports/fairness"
        anonymous = client.http.get(url, params=good)
        refused = client.http.get(url, params=good, headers=bearer(ingest))
        read = client.http.get(url, params=good, headers=bearer(officer))
        empty = client.http.get(url, params={**good, "threshold": 0.5}, headers=bearer(admin))
        invalid = [client.http.get(url, params=p, headers=bearer(officer)) for p in bad]
    assert (anonymous.status_code, refused.status_code) == (401, 403)
    assert read.status_code == 200 and read.json()["report"]["groups"] == []
    assert empty.status_code == 200 and empty.json()["threshold"] == 0.5
    for response in invalid:
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    with engine.connect() as connection:
        logged = connection.execute(select(AccessRecord.actor, AccessRecord.action)).all()
    assert sorted(logged) == [("admin-1", "fairness report"), ("safety-1", "fairness report")]
