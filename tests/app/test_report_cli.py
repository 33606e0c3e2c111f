"""``bedside report --out DIR`` on seeded stores: the files a cron job gets, the same numbers as
the report code computes, alerts for what was planted (exit 3) and none without a plant (exit 0),
configured thresholds honoured, every read in the access log."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from app.audit.tables import AccessRecord
from app.cli import main
from app.factory import BUNDLED_MODELS
from app.models.package import ModelPackage, load_packages
from app.reports.queries import FairnessQuery, fairness_counts
from app.reports.seed import Drift, Miscalibration, Overriding, SeedConfig, seed_store
from fairness import columns as C
from fairness.report import fairness_report
from tests.conftest import TEST_AUDIT_KEY

MODEL = "readmission-30d"
START = datetime(2026, 1, 1, tzinfo=UTC)
END = START + timedelta(days=90)
WINDOW = ["--start", START.isoformat(), "--end", END.isoformat()]


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    return load_packages(BUNDLED_MODELS)[0]


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch, database_url: str) -> None:
    monkeypatch.setenv("BEDSIDE_DATABASE_URL", database_url)
    monkeypatch.setenv("BEDSIDE_AUDIT_HMAC_KEY", TEST_AUDIT_KEY)
    monkeypatch.delenv("BEDSIDE_MODEL_DIR", raising=False)


def alerts_of(out: Path) -> list[dict[str, str]]:
    return orjson.loads((out / "alerts.json").read_bytes())


@pytest.mark.usefixtures("environment")
def test_planted_effects_raise_alerts_and_every_format_is_written(
    engine: Any, package: ModelPackage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SeedConfig(
        predictions=12_000,
        seed=5,
        miscalibration=Miscalibration("race", "Asian"),
        overriding=Overriding(column="sex", value="female", planted_rate=0.7),
        reference=package.reference["features"],
        drifts=(Drift("age_years", datetime(2026, 2, 16, tzinfo=UTC), shift=1.0),),
    )
    seed_store(engine, config)
    out = tmp_path / "reports"
    code = main(["report", "--out", str(out), *WINDOW, "--agreement-group-by", "sex"])
    printed = capsys.readouterr().out
    assert code == 3, printed
    folder = out / MODEL
    for name in ("fairness-sex", "fairness-race", "fairness-age_band", "agreement", "drift"):
        for suffix in ("json", "csv", "html"):
            assert (folder / f"{name}.{suffix}").stat().st_size > 0, (name, suffix)
    assert {"plotly.min.js", "dashboard.js", "dashboard.css"} <= {p.name for p in folder.iterdir()}

    alerts = alerts_of(out)
    fairness = [a["what"] for a in alerts if a["report"] == "fairness"]
    assert fairness == ["race=Asian: calibration critical"], fairness
    agreement = [a["what"] for a in alerts if a["report"] == "agreement"]
    assert agreement and all(what.startswith("sex=female") for what in agreement), agreement
    drift = [a["what"] for a in alerts if a["report"] == "drift"]
    assert drift and all(what.startswith("age_years ") for what in drift), drift
    assert f"{len(alerts)} alert(s)" in printed and "race=Asian" in printed

    written = orjson.loads((folder / "fairness-race.json").read_bytes())
    high = next(band.lower for band in package.bands if band.name == "high")
    groups, _ = fairness_counts(engine, FairnessQuery(MODEL, START, END, ("race",), high))
    expected = fairness_report(groups, ("race",))
    by_race = {row["race"]: row for row in written["report"]["groups"]}
    for row in expected["groups"]:
        for name in (C.N, C.EVENTS, C.TPR, C.OBSERVED_EXPECTED, C.AUROC, C.AUPRC):
            assert by_race[row["race"]][name] == row[name], (row["race"], name)
    table = list(csv.DictReader(io.StringIO((folder / "fairness-race.csv").read_text())))
    assert {row["race"] for row in table if row["section"] == "group"} >= set(by_race)
    assert "<svg" not in (folder / "drift.html").read_text()[:200]  # charts are drawn by script
    assert 'src="./plotly.min.js' in (folder / "drift.html").read_text()

    with engine.connect() as connection:
        actions = list(connection.execute(select(AccessRecord.action, AccessRecord.actor)))
    reads = [action for action, actor in actions if actor.startswith("cli:")]
    assert reads.count("fairness report") == 3
    assert reads.count("agreement report") == reads.count("drift report") == 1


@pytest.mark.usefixtures("environment")
def test_nothing_planted_gives_no_alert_and_exit_zero(
    engine: Any, package: ModelPackage, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = SeedConfig(
        predictions=8000,
        seed=7,
        overriding=Overriding(),
        reference=package.reference["features"],
    )
    seed_store(engine, config)
    code = main(["report", "--out", str(tmp_path), *WINDOW])
    assert code == 0, capsys.readouterr().out
    assert alerts_of(tmp_path) == []


@pytest.mark.usefixtures("environment")
def test_configured_thresholds_decide_what_alerts(
    engine: Any,
    package: ModelPackage,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = SeedConfig(
        predictions=8000,
        seed=8,
        overriding=Overriding(rate=0.2),
        reference=package.reference["features"],
    )
    seed_store(engine, config)
    monkeypatch.setenv("BEDSIDE_REPORT_OVERRIDE_RATE_ALERT", "0.05")
    monkeypatch.setenv("BEDSIDE_REPORT_MIN_CELL", "20")
    chosen = ["--group-by", "age_band", "--disparity-alerts", "flag_rate"]
    code = main(["report", "--out", str(tmp_path), *WINDOW, *chosen])
    capsys.readouterr()
    assert code == 3
    alerts = [a["what"] for a in alerts_of(tmp_path)]
    assert any("override rate" in what for what in alerts), alerts
    # the seed's risk rises with age: flag rates differ by age band, alerting only when chosen
    assert any(what.startswith("age_band=") and "flag_rate ratio" in what for what in alerts)
    written = orjson.loads((tmp_path / MODEL / "fairness-age_band.json").read_bytes())
    assert written["report"]["thresholds"]["min_cell"] == 20


@pytest.mark.usefixtures("environment")
def test_an_unknown_model_is_a_usage_error(
    engine: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", "--out", str(tmp_path), "--model", "no-such-model"]) == 2
    assert "unknown model" in capsys.readouterr().err
