"""Report benchmark: seed an audit store with a million predictions (with feedback, outcomes and
features), then time each report's SQL aggregation plus metrics, as its endpoint runs them.

``python -m benchmarks.bench_reports`` (SQLite in a temporary folder; BENCH_REPORT_DATABASE_URL
for another database, e.g. an empty PostgreSQL one; BENCH_REPORT_PREDICTIONS for another size).
A database given by URL that already holds the seeded predictions is timed without seeding it
again (seeding a million takes about twenty minutes). Medians of three.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from app.audit.tables import ReportFact
from app.factory import BUNDLED_MODELS
from app.models.package import load_package
from app.reports.agreement_queries import AgreementQuery, agreement_counts
from app.reports.drift_queries import DriftQuery, drift_counts
from app.reports.queries import FairnessQuery, fairness_counts
from app.reports.seed import Miscalibration, Overriding, SeedConfig, seed_store
from app.store.database import make_engine
from app.store.migrate import upgrade
from fairness.agreement import agreement_report
from fairness.drift import DriftThresholds, drift_report
from fairness.report import ReportThresholds, fairness_report

PREDICTIONS = int(os.environ.get("BENCH_REPORT_PREDICTIONS", "1000000"))
RUNS = 3


def timed(work: Callable[[], Any]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _predictions(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(ReportFact)).scalar_one())


def main() -> None:
    package = load_package(BUNDLED_MODELS / "readmission-30d")
    with tempfile.TemporaryDirectory() as folder:
        url = os.environ.get("BENCH_REPORT_DATABASE_URL") or f"sqlite:///{Path(folder) / 'r.db'}"
        upgrade(url)
        engine = make_engine(url)
        config = SeedConfig(
            predictions=PREDICTIONS,
            days=180,
            miscalibration=Miscalibration("race", "Asian"),
            overriding=Overriding(column="sex", value="female"),
            reference=package.reference["features"],
        )
        started = time.perf_counter()
        if _predictions(engine) != PREDICTIONS:
            seed_store(engine, config)
        seeded = time.perf_counter() - started
        start, end = config.start, config.start + timedelta(days=config.days)
        high = next(band.lower for band in package.bands if band.name == "high")
        fairness = FairnessQuery(package.name, start, end, ("sex", "race"), high)
        agreement = AgreementQuery(package.name, start, end, "band", "readmission_30d")
        drift = DriftQuery(package.name, start, end, "week")

        def fairness_work() -> None:
            groups, _ = fairness_counts(engine, fairness)
            fairness_report(groups, fairness.group_by, ReportThresholds())

        def agreement_work() -> None:
            groups, weeks, _ = agreement_counts(engine, agreement)
            agreement_report(groups, ("band",), weeks, ReportThresholds())

        def drift_work() -> None:
            cells, flags = drift_counts(engine, drift, package.reference)
            complete = sorted({bucket for bucket, _, _ in flags})
            drift_report(cells, flags, package.reference, complete, None, DriftThresholds())

        results = {
            "fairness (sex × race)": timed(fairness_work),
            "agreement (by band)": timed(agreement_work),
            "drift (weekly, every feature and the score)": timed(drift_work),
        }
        engine.dispose()
    print(
        f"reports over {PREDICTIONS:,} predictions ({engine.dialect.name}); seeded in "
        f"{seeded:.0f} s"
    )
    for name, seconds in results.items():
        print(f"  {name}: median {seconds:.2f} s of {RUNS}")


if __name__ == "__main__":
    main()
