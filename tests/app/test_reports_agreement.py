"""The agreement report through the running service, on seeded audit stores with and without a
planted override bias: findings, exact counts, week buckets, suppression, comments kept out,
formats, errors, access control and logging."""

from __future__ import annotations

import csv
import io
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from app.access.tokens import create_token
from app.audit.tables import AccessRecord
from app.factory import BUNDLED_MODELS, create_app
from app.models.card import OVERRIDE_REASONS
from app.models.package import ModelPackage, load_packages
from app.reports.agreement_queries import AgreementQuery, agreement_counts
from app.reports.cli import agreement_alerts
from app.reports.seed import Overriding, SeedConfig, draw_cohort, draw_feedback, seed_store
from app.settings import Settings
from fairness import columns as C
from fairness.agreement import agreement_report
from tests.support.api_tokens import bearer
from tests.support.servers import serve_on_loopback

MODEL = "readmission-30d"
PLANTED = Overriding(column="race", value="Black or African American", planted_rate=0.6)
START, END = "2026-01-01T00:00:00Z", "2026-04-01T00:00:00Z"
WINDOW = (datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC))
Serve = Callable[[], Any]


@pytest.fixture(scope="module")
def packages() -> list[ModelPackage]:
    return load_packages(BUNDLED_MODELS)


@pytest.fixture
def serve(make_settings: Callable[..., Settings], packages: list[ModelPackage]) -> Serve:
    """Bedside serving the bundled package."""

    @contextmanager
    def run() -> Iterator[tuple[str, httpx.Client]]:
        app = create_app(make_settings(), packages=packages)
        with serve_on_loopback(app) as base_url, httpx.Client(timeout=30) as http:
            yield f"{base_url}/reports/agreement", http

    return run


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


COUNTS = [C.CARDS, C.HIGH_RISK, C.ACCEPTED, C.OVERRIDDEN, C.NO_RESPONSE, C.COMMENTS, C.REASON_COUNT]
COUNTS += [
    f"{cell}{suffix}"
    for cell in (C.OVERRIDDEN_HIGH, C.ACCEPTED_HIGH, C.ACCEPTED_OTHER)
    for suffix in (C.LABELLED_SUFFIX, C.EVENTS_SUFFIX)
]


def small_count(value: Any) -> bool:
    """A count between 1 and 9 (JSON or CSV)."""
    try:
        return 0 < float(value) < 10
    except (TypeError, ValueError):
        return False


def separated(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """The two rows' override-rate intervals do not overlap."""
    low, high = C.OVERRIDE_RATE + C.LOW, C.OVERRIDE_RATE + C.HIGH
    return a[low] > b[high] or b[low] > a[high]


def test_the_planted_override_bias_is_found_counts_are_exact_and_nothing_leaks(
    serve: Serve, engine: Any
) -> None:
    config = SeedConfig(predictions=6000, seed=4, overriding=PLANTED)
    seed_store(engine, config)
    officer = create_token(engine, "safety-1", "safety_officer")
    window = {"model": MODEL, "start": START, "end": END}
    with serve() as (url, http):
        by_race = http.get(url, params={**window, "group_by": "race"}, headers=bearer(officer))
        week = {**window, "group_by": "race", "start": "2026-01-05", "end": "2026-01-12"}
        small = http.get(url, params=week, headers=bearer(officer))
        exported = http.get(url, params={**week, "format": "csv"}, headers=bearer(officer))
    assert by_race.status_code == 200, by_race.text
    body = by_race.json()
    report = body["report"]
    assert report["thresholds"]["min_cell"] == 10 and body["versions"][0]["version"] == "1.0.0"

    cohort = draw_cohort(config)
    answers = draw_feedback(config, cohort)
    shown = cohort["probability"] >= config.bands[1][1]
    responded = shown & answers["responds"]
    total = report["overall"]
    assert total[C.CARDS] == shown.sum()
    assert total[C.OVERRIDDEN] == (responded & answers["overridden"]).sum()  # latest answer wins
    assert total[C.NO_RESPONSE] == (shown & ~answers["responds"]).sum()
    assert total[C.COMMENTS] == (responded & answers["comment"]).sum()
    assert 1.0 < total[C.HOURS_MEDIAN] < 3.0 and total[C.HOURS_P90] > total[C.HOURS_MEDIAN]
    assert total[C.OVERRIDDEN_HIGH + C.LABELLED_SUFFIX] > 100

    rows = {row["race"]: row for row in report["groups"]}
    planted = rows.pop(PLANTED.value)
    assert 0.5 < planted[C.OVERRIDE_RATE] < 0.7
    others = [row for row in rows.values() if row[C.CARDS] != C.SUPPRESSED and row[C.CARDS] >= 100]
    assert len(others) >= 3
    assert all(planted[C.OVERRIDE_RATE + C.LOW] > row[C.OVERRIDE_RATE + C.HIGH] for row in others)
    assert not any(separated(a, b) for a, b in itertools.combinations(others, 2))

    codes = {reason.code for reason in OVERRIDE_REASONS}
    assert {row["override_code"] for row in report["reasons"]} <= codes
    assert len(report["trend"]) == 14 and report["trend"][0]["week"] == "2025-12-29"

    weekly = small.json()["report"]
    assert [row["week"] for row in weekly["trend"]] == ["2026-01-05"]
    hidden = [row for row in weekly["groups"] if row[C.CARDS] == C.SUPPRESSED]
    assert hidden, "in one week some race has fewer than 10 cards"
    assert all(numbers_in(row, set()) == [] for row in hidden)
    hidden_reasons = [row for row in weekly["reasons"] if row[C.REASON_COUNT] == C.SUPPRESSED]
    assert hidden_reasons and all(numbers_in(row, set()) == [] for row in hidden_reasons)

    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    sections = Counter(row["section"] for row in table)
    assert sections == {
        "group": len(weekly["groups"]) + 1,
        "reason": len(weekly["reasons"]),
        "trend": len(weekly["trend"]),
    }
    context = {"section", "model", "versions", "start", "end", "label", "week"}
    for row in table:
        if C.SUPPRESSED in (row[C.CARDS], row[C.REASON_COUNT]):
            assert numbers_in(row, context) == [], row
    for row in [*report["groups"], *report["reasons"], *weekly["groups"], *table]:
        assert not [name for name in COUNTS if name in row and small_count(row[name])], row
    assert sum(row[C.CARDS] == C.SUPPRESSED for row in table) == len(hidden)
    for response in (by_race, small, exported):
        assert "seed comment" not in response.text and "may name" not in response.text
    assert access_count(engine) == 3


@pytest.mark.timeout(600)  # twenty seeded stores
def test_nothing_planted_raises_no_alert_across_twenty_seeds(engine: Any) -> None:
    """No configured alert on any of twenty honest stores; on the first five, no two big groups
    even have separated override-rate intervals (over twenty, a few of the ~500 pairs would by
    chance: that is not an alert)."""
    rate = Settings().report_override_rate_alert
    for seed in range(20):
        model = f"null-{seed}"
        seed_store(
            engine, SeedConfig(predictions=2500, seed=seed, model=model, overriding=Overriding())
        )
        for group_by in ("race", "sex", "age_band", "indicator"):
            groups, weeks, _ = agreement_counts(engine, AgreementQuery(model, *WINDOW, group_by))
            report = agreement_report(groups, (group_by,), weeks)
            body = {"group_by": group_by, "report": report}
            assert agreement_alerts(model, body, rate) == [], (seed, group_by)
            if seed >= 5:
                continue
            rows = report["groups"]
            big = [row for row in rows if row[C.CARDS] != C.SUPPRESSED and row[C.CARDS] >= 100]
            # by sex a third group of 1–2 hides the second big group too (complementary)
            assert len(big) >= (1 if group_by == "sex" else 2)
            assert sum(group.n for group in groups) > 700
            big = [row for row in big if row[C.OVERRIDE_RATE] != C.SUPPRESSED]
            flagged = [
                (a[group_by], b[group_by])
                for a, b in itertools.combinations(big, 2)
                if separated(a, b)
            ]
            assert flagged == [], (seed, group_by)


def test_weeks_start_on_monday_utc_on_every_database(engine: Any) -> None:
    start = datetime(2026, 1, 4, 20, tzinfo=UTC)  # a Sunday evening; the window spans Monday
    config = SeedConfig(predictions=400, seed=2, start=start, days=1, model="weeks")
    seed_store(engine, config)
    cohort = draw_cohort(config)
    shown = cohort["probability"] >= config.bands[1][1]
    expected: Counter[str] = Counter()
    for offset in cohort["offset"][shown]:
        moment = start + timedelta(seconds=float(offset))
        expected[(moment.date() - timedelta(days=moment.weekday())).isoformat()] += 1
    assert set(expected) == {"2025-12-29", "2026-01-05"}
    query = AgreementQuery("weeks", start, start + timedelta(days=2), "week")
    groups, weeks, _ = agreement_counts(engine, query)
    assert {group.key[0]: group.n for group in groups} == dict(expected)
    assert {week.key[0]: week.n for week in weeks} == dict(expected)
    assert all(group.responded == 0 for group in groups)  # no feedback was seeded


def test_reads_need_a_safety_officer_or_admin_bad_requests_get_400_and_reads_are_logged(
    serve: Serve, engine: Any
) -> None:
    officer = create_token(engine, "safety-1", "safety_officer")
    admin = create_token(engine, "admin-1", "admin")
    ingest = create_token(engine, "lab-feed", "ingest")
    good = {"model": MODEL, "start": START, "end": END}
    bad = [
        {**good, "group_by": "postcode"},
        {**good, "group_by": "sex,race"},
        {**good, "format": "xml"},
        {**good, "model": "no-such-model"},
        {**good, "start": END, "end": START},
        {**good, "start": "yesterday"},
    ]
    with serve() as (url, http):
        anonymous = http.get(url, params=good)
        refused = http.get(url, params=good, headers=bearer(ingest))
        read = http.get(url, params=good, headers=bearer(officer))
        weekly = http.get(url, params={**good, "group_by": "week"}, headers=bearer(admin))
        invalid = [http.get(url, params=p, headers=bearer(officer)) for p in bad]
    assert (anonymous.status_code, refused.status_code) == (401, 403)
    assert read.status_code == 200 and read.json()["report"]["groups"] == []
    assert read.json()["report"]["overall"][C.CARDS] == C.SUPPRESSED
    assert weekly.status_code == 200 and weekly.json()["report"]["trend"] == []
    for response in invalid:
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    with engine.connect() as connection:
        logged = connection.execute(select(AccessRecord.actor, AccessRecord.action)).all()
    assert sorted(logged) == [("admin-1", "agreement report"), ("safety-1", "agreement report")]
