"""The dashboard in a real headless Chromium (Debian's, never a downloaded one): sign in
through the form, open every page on a seeded store with planted effects, check the numbers
against the JSON reports, that plotly drew every chart, and that the console stayed clean."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.access.tokens import create_token
from app.dashboard.render import asset_files, fairness_html
from app.factory import BUNDLED_MODELS, create_app
from app.models.package import load_packages
from app.reports.seed import Drift, Miscalibration, Overriding, SeedConfig, seed_store
from app.settings import Settings
from app.store.database import make_engine
from app.store.migrate import upgrade
from fairness import columns as C
from tests.support.api_tokens import bearer
from tests.support.servers import free_port, serve_on_loopback

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 20_000
MODEL = "readmission-30d"
PLANTED_GROUP = "Black or African American"
API_WINDOW = {"model": MODEL, "start": "2026-01-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
QUERY = f"model={MODEL}&start=2026-01-01&end=2026-04-01"

if not CHROMIUM.exists():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing on CI (.ci/run installs Debian's chromium)")
    pytest.skip(f"{CHROMIUM} is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.timeout(240)


@dataclass
class Console:
    """What a page reported: console errors, uncaught exceptions, failed or refused requests."""

    problems: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        page.on("response", self._response)

    def _console(self, message: Any) -> None:
        if message.type in ("error", "warning"):
            self.problems.append(f"console {message.type}: {message.text}")

    def _response(self, response: Any) -> None:
        if response.status >= 400:
            self.problems.append(f"{response.status} for {response.url}")


@pytest.fixture
def artifacts() -> Path:
    root = Path(os.environ.get("BEDSIDE_TEST_ARTIFACTS") or Path.cwd() / "test-artifacts")
    folder = root / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def served(make_settings: Callable[..., Settings], database_url: str) -> Iterator[dict[str, Any]]:
    """Bedside on a loopback port over a store with a planted miscalibration, override bias and
    drift; its URL, an officer's token and the JSON reports the pages must agree with."""
    upgrade(database_url)
    engine = make_engine(database_url)
    packages = load_packages(BUNDLED_MODELS)
    seed_store(
        engine,
        SeedConfig(
            predictions=6000,
            seed=5,
            miscalibration=Miscalibration("race", PLANTED_GROUP, 0.5),
            overriding=Overriding(column="race", value=PLANTED_GROUP, planted_rate=0.6),
            reference=packages[0].reference["features"],
            drifts=(Drift("age_years", datetime(2026, 2, 15, tzinfo=UTC), shift=1.5),),
        ),
    )
    token = create_token(engine, "s.officer", "safety_officer")
    port = free_port()
    app = create_app(make_settings(public_url=f"http://127.0.0.1:{port}"), packages=packages)
    with serve_on_loopback(app, port=port) as base_url, httpx.Client(timeout=60) as http:
        reports = {
            kind: http.get(
                f"{base_url}/reports/{kind}", params=API_WINDOW | extra, headers=bearer(token)
            ).json()
            for kind, extra in (
                ("fairness", {"group_by": "race"}),
                ("agreement", {"group_by": "race"}),
                ("drift", {}),
            )
        }
        yield {"url": base_url, "token": token, "reports": reports}
    engine.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        try:
            yield chromium
        finally:
            chromium.close()


def charts_drawn(page: Any) -> int:
    """Wait until dashboard.js has drawn every chart; the number of plotly figures drawn."""
    page.wait_for_selector("body[data-charts=drawn]", state="attached", timeout=WAIT_MS)
    expected = page.locator("[data-chart]").count()
    drawn = page.locator("[data-chart][data-rendered=true] svg.main-svg").count()
    assert expected > 0 and drawn >= expected, (expected, drawn)
    return expected


def cell(page: Any, table: str, group: str, key: str) -> str:
    row = page.locator(f'table#{table} tr[data-group="{group}"] td[data-key="{key}"]')
    return row.inner_text(timeout=WAIT_MS).strip()


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def test_an_officer_signs_in_and_every_page_shows_its_numbers_and_charts(
    served: dict[str, Any], browser: Any, artifacts: Path
) -> None:
    base, reports = served["url"], served["reports"]
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    console = Console()
    console.watch(page)

    page.goto(f"{base}/dashboard/drift?{QUERY}")
    assert "/dashboard/sign-in" in page.url  # redirected: not signed in
    page.fill("input[name=token]", "bds_not-a-real-token")
    page.click("form button[type=submit]")
    assert page.locator(".error").inner_text().startswith("That token is unknown")
    page.screenshot(path=str(artifacts / "sign-in-refused.png"))
    assert console.problems == [
        f"401 for {base}/dashboard/sign-in",
        "console error: Failed to load resource: the server responded with a status of 401 "
        "(Unauthorized)",
    ]
    console.problems.clear()  # the refusal was meant; from here on nothing may fail
    page.fill("input[name=token]", served["token"])
    page.click("form button[type=submit]")
    page.wait_for_url(f"{base}/dashboard/drift?{QUERY}", timeout=WAIT_MS)

    drift = reports["drift"]["report"]
    assert charts_drawn(page) == 2
    alerts = page.locator("#alerts").inner_text()
    assert all(alert[C.FEATURE] in alerts for alert in drift["alerts"])
    assert "age_years" in alerts
    whole = {row[C.FEATURE]: row for row in drift["features"] if row["bucket"] == "all"}
    assert cell(page, "features", "age_years", C.PSI) == f"{whole['age_years'][C.PSI]:.3f}"
    assert page.locator("#drift-heatmap .heatmaplayer").count() == 1
    page.screenshot(path=str(artifacts / "drift.png"), full_page=True)

    page.click("nav >> text=Fairness")
    page.wait_for_url(f"{base}/dashboard/fairness?*", timeout=WAIT_MS)
    page.select_option("select[name=group_by] >> nth=0", "race")
    page.click("form.params button[type=submit]")
    page.wait_for_url("**group_by=race**", timeout=WAIT_MS)
    assert charts_drawn(page) == 2
    groups = {row["race"]: row for row in reports["fairness"]["report"]["groups"]}
    planted = groups[PLANTED_GROUP]
    assert cell(page, "performance", PLANTED_GROUP, C.TPR).startswith(percent(planted[C.TPR]))
    ratio = cell(page, "disparity", PLANTED_GROUP, "tpr_ratio")
    assert ratio.startswith(f"{planted['tpr_ratio']:.2f}") and "critical" in ratio
    for name, row in groups.items():
        if row[C.N] == C.SUPPRESSED or row[C.TPR] == C.SUPPRESSED:
            assert cell(page, "performance", name, C.TPR) == C.SUPPRESSED
    assert page.locator("#disparity .scatterlayer .point").count() > 0
    page.screenshot(path=str(artifacts / "fairness.png"), full_page=True)

    page.click("nav >> text=Agreement")
    page.wait_for_url(f"{base}/dashboard/agreement?*", timeout=WAIT_MS)
    page.select_option("select[name=group_by]", "race")
    page.click("form.params button[type=submit]")
    page.wait_for_url("**group_by=race**", timeout=WAIT_MS)
    assert charts_drawn(page) == 2
    overall = reports["agreement"]["report"]["overall"]
    fact = page.locator("[data-fact=override_rate]").inner_text()
    assert fact.startswith(percent(overall[C.OVERRIDE_RATE]))
    rates = {row["race"]: row for row in reports["agreement"]["report"]["groups"]}
    shown = cell(page, "responses", PLANTED_GROUP, C.OVERRIDE_RATE)
    assert shown.startswith(percent(rates[PLANTED_GROUP][C.OVERRIDE_RATE]))
    assert page.locator("#reasons .barlayer .point").count() > 0
    page.screenshot(path=str(artifacts / "agreement.png"), full_page=True)

    page.click("nav >> text=Model card")
    page.wait_for_url(f"{base}/dashboard/models/{MODEL}", timeout=WAIT_MS)
    assert "Intended use" in page.content()
    page.screenshot(path=str(artifacts / "model-card.png"), full_page=True)

    page.click("nav >> text=Overview")
    page.wait_for_url(f"{base}/dashboard/?*", timeout=WAIT_MS)
    assert page.locator("table#models tr[data-group='readmission-30d']").count() == 1
    page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

    page.click("text=Sign out")
    page.wait_for_url(f"{base}/dashboard/sign-in", timeout=WAIT_MS)
    page.goto(f"{base}/dashboard/fairness")
    assert "/dashboard/sign-in" in page.url
    context.close()
    assert console.problems == []


def test_a_standalone_report_file_draws_its_charts_next_to_copied_assets(
    served: dict[str, Any], browser: Any, artifacts: Path, tmp_path: Path
) -> None:
    for asset in asset_files():
        shutil.copy(asset, tmp_path / asset.name)
    report = tmp_path / "fairness.html"
    report.write_text(fairness_html(served["reports"]["fairness"], "."), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    console = Console()
    console.watch(page)
    page.goto(report.as_uri(), timeout=WAIT_MS)
    assert charts_drawn(page) == 2
    page.screenshot(path=str(artifacts / "fairness-standalone.png"), full_page=True)
    context.close()
    assert console.problems == []
