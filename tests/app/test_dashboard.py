"""The safety officers' dashboard through the running service: signing in with a token, pages
showing the numbers of the JSON reports (computed there, not here), suppressed cells shown as
text only, ``format=html`` on the report endpoints, headers, assets and the access log."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.access.tokens import create_token, revoke_token
from app.audit.tables import AccessRecord, PredictionRecord
from app.dashboard.render import fairness_html
from app.factory import BUNDLED_MODELS
from app.models.package import ModelPackage, load_packages
from app.reports.seed import Drift, Miscalibration, Overriding, SeedConfig, seed_store
from fairness import columns as C
from tests.support.api_tokens import bearer

RunBedside = Callable[..., Any]
MODEL = "readmission-30d"
PLANTED_GROUP = "Black or African American"
API_WINDOW = {"model": MODEL, "start": "2026-01-01T00:00:00Z", "end": "2026-04-01T00:00:00Z"}
PAGE_WINDOW = {"model": MODEL, "start": "2026-01-01", "end": "2026-04-01"}
DIGIT = re.compile(r"\d")


@pytest.fixture(scope="module")
def packages() -> list[ModelPackage]:
    return load_packages(BUNDLED_MODELS)


def seeded(package: ModelPackage, predictions: int = 6000) -> SeedConfig:
    """A store with a planted miscalibration, override bias and drift of age from mid-February."""
    return SeedConfig(
        predictions=predictions,
        seed=5,
        miscalibration=Miscalibration("race", PLANTED_GROUP, 0.5),
        overriding=Overriding(column="race", value=PLANTED_GROUP, planted_rate=0.6),
        reference=package.reference["features"],
        drifts=(Drift("age_years", datetime(2026, 2, 15, tzinfo=UTC), shift=1.5),),
    )


@contextmanager
def dashboard(
    run_bedside: RunBedside, packages: list[ModelPackage], **overrides: Any
) -> Iterator[tuple[str, httpx.Client]]:
    with (
        run_bedside(packages=packages, **overrides) as bedside,
        httpx.Client(base_url=bedside.base_url, timeout=60, follow_redirects=False) as http,
    ):
        yield bedside.base_url, http


def sign_in(http: httpx.Client, token: str, next_page: str = "") -> httpx.Response:
    return http.post("/dashboard/sign-in", data={"token": token, "next": next_page})


class Tables(HTMLParser):
    """The cells of every ``<table id=…>``: table id → row ``data-group`` → cell → text (cells
    named by ``data-key``, the row's heading as "_label")."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, dict[str, str]]] = {}
        self.facts: dict[str, str] = {}
        self._table: str | None = None
        self._row: dict[str, str] | None = None
        self._cell: str | None = None
        self._fact: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id") or ""
            self.tables[self._table] = {}
        elif tag == "tr" and self._table is not None and "data-group" in found:
            self._row = self.tables[self._table].setdefault(found["data-group"] or "", {})
        elif tag == "th" and self._row is not None:
            self._cell = "_label"
        elif tag == "td" and self._row is not None:
            self._cell = found.get("data-key") or f"_{len(self._row)}"
        elif tag == "dd" and "data-fact" in found:
            self._fact = found["data-fact"]
        if self._cell is not None and self._row is not None:
            self._row.setdefault(self._cell, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = self._row = None
        elif tag == "tr":
            self._row = None
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "dd":
            self._fact = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            self._row[self._cell] += data
        if self._fact is not None:
            self.facts[self._fact] = self.facts.get(self._fact, "") + data


def chart_specs(html: str) -> dict[str, dict[str, Any]]:
    found = re.findall(r'<script type="application/json" id="([\w-]+)-spec">(.*?)</script>', html)
    return {name: json.loads(text) for name, text in found}


def percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def percent_interval(row: dict[str, Any], key: str) -> str:
    return f"{row[key + '_low'] * 100:.1f}–{row[key + '_high'] * 100:.1f}%"


def access_rows(engine: Any) -> list[tuple[str, str, dict[str, Any]]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(AccessRecord.actor, AccessRecord.action, AccessRecord.parameters).order_by(
                AccessRecord.id
            )
        ).all()
    return [(actor, action, json.loads(parameters)) for actor, action, parameters in rows]


def test_sign_in_needs_a_live_reader_token_and_sets_a_strict_http_only_cookie(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    officer = create_token(engine, "s.officer", "safety_officer")
    ingest = create_token(engine, "lab-feed", "ingest")
    unknown = "bds_" + "x" * 43
    with dashboard(run_bedside, packages) as (_, http):
        anonymous = http.get("/dashboard/fairness", params={"group_by": "race"})
        form = http.get(anonymous.headers["location"])
        bad = sign_in(http, unknown)
        wrong_role = sign_in(http, ingest)
        good = sign_in(http, officer, "/dashboard/fairness?group_by=race")
        page = http.get("/dashboard/")
        elsewhere = sign_in(http, officer, "https://evil.example/dashboard/")
        sneaky = sign_in(http, officer, "//evil.example/dashboard/")
        out = http.post("/dashboard/sign-out")
        after = http.get("/dashboard/")
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == (
        "/dashboard/sign-in?next=%2Fdashboard%2Ffairness%3Fgroup_by%3Drace"
    )
    assert form.status_code == 200 and 'name="token"' in form.text
    assert 'value="/dashboard/fairness?group_by=race"' in form.text
    assert bad.status_code == 401 and "unknown or has been revoked" in bad.text
    assert unknown not in bad.text and "set-cookie" not in bad.headers
    assert wrong_role.status_code == 403 and "safety_officer or admin" in wrong_role.text
    assert ingest not in wrong_role.text and "set-cookie" not in wrong_role.headers
    assert (
        good.status_code == 303 and good.headers["location"] == "/dashboard/fairness?group_by=race"
    )
    cookie = good.headers["set-cookie"]
    assert cookie.startswith(f"bedside_dashboard={officer};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert "secure" not in attributes  # the public URL is http here
    assert page.status_code == 200 and "Signed in as s.officer" in page.text
    assert officer not in page.text
    assert elsewhere.headers["location"] == sneaky.headers["location"] == "/dashboard/"
    assert out.status_code == 303 and 'bedside_dashboard=""' in out.headers["set-cookie"]
    assert after.status_code == 303


def test_the_cookie_is_secure_behind_https_and_a_revoked_token_signs_out(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    officer = create_token(engine, "s.officer", "safety_officer")
    with dashboard(run_bedside, packages, public_url="https://bedside.example/cds") as (_, http):
        signed = sign_in(http, officer)
        http.cookies.set("bedside_dashboard", officer)
        before = http.get("/dashboard/")
        revoke_token(engine, "s.officer")
        after = http.get("/dashboard/")
    attributes = {part.strip().lower() for part in signed.headers["set-cookie"].split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/cds"} <= attributes
    assert signed.headers["location"] == "/cds/dashboard/"
    assert before.status_code == 200
    assert after.status_code == 303 and after.headers["location"].startswith(
        "/cds/dashboard/sign-in"
    )


def test_report_pages_show_the_numbers_of_the_json_reports_and_log_each_read(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    seed_store(engine, seeded(packages[0]))
    officer = create_token(engine, "s.officer", "safety_officer")
    with dashboard(run_bedside, packages) as (_, http):
        api = {
            kind: http.get(f"/reports/{kind}", params=API_WINDOW | extra, headers=bearer(officer))
            for kind, extra in (
                ("fairness", {"group_by": "race"}),
                ("agreement", {"group_by": "race"}),
                ("drift", {}),
            )
        }
        sign_in(http, officer)
        pages = {
            kind: http.get(f"/dashboard/{kind}", params=PAGE_WINDOW | extra)
            for kind, extra in (
                ("fairness", {"group_by": "race"}),
                ("agreement", {"group_by": "race"}),
                ("drift", {}),
            )
        }
        model_card = http.get(f"/dashboard/models/{MODEL}")
    for kind in api:
        assert api[kind].status_code == 200, api[kind].text
        assert pages[kind].status_code == 200, pages[kind].text
        assert pages[kind].headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in pages[kind].headers["content-security-policy"]
        assert "frame-ancestors 'none'" in pages[kind].headers["content-security-policy"]
        assert pages[kind].headers["x-frame-options"] == "DENY"
        assert pages[kind].headers["cache-control"] == "no-store"
        assert "<script>" not in pages[kind].text  # no inline script: CSP holds

    fairness = api["fairness"].json()
    page = Tables(pages["fairness"].text)
    performance = page.tables["performance"]
    assert page.facts["predictions"] == f"{fairness['predictions']:,}"
    for row in fairness["report"]["groups"]:
        shown = performance[row["race"]]
        assert shown[C.N].strip() == f"{row[C.N]:,}"
        if isinstance(row[C.TPR], float):
            assert shown[C.TPR] == percent(row[C.TPR]) + percent_interval(row, C.TPR)
        else:
            assert shown[C.TPR] == C.SUPPRESSED
        assert ("underpowered" in shown["power"]) == (row[C.UNDERPOWERED] is True)
    planted = fairness["report"]["groups"][
        [row["race"] for row in fairness["report"]["groups"]].index(PLANTED_GROUP)
    ]
    disparity = page.tables["disparity"][PLANTED_GROUP]
    assert disparity["tpr_ratio"].startswith(f"{planted['tpr_ratio']:.2f}")
    assert planted["tpr_ratio_flag"] == "critical" and "critical" in disparity["tpr_ratio"]
    calibration = page.tables["calibration"][PLANTED_GROUP]
    assert calibration[C.OBSERVED_EXPECTED].startswith(f"{planted[C.OBSERVED_EXPECTED]:.2f}")
    specs = chart_specs(pages["fairness"].text)
    assert set(specs) == {"calibration", "disparity"}
    tpr_trace = next(t for t in specs["disparity"]["data"] if t["name"] == "TPR")
    assert tpr_trace["x"][tpr_trace["y"].index(PLANTED_GROUP)] == pytest.approx(
        planted["tpr_ratio"]
    )

    agreement = api["agreement"].json()
    responses = Tables(pages["agreement"].text).tables["responses"]
    for row in [*agreement["report"]["groups"], agreement["report"]["overall"]]:
        shown = responses[row["race"]]
        assert shown[C.CARDS] == f"{row[C.CARDS]:,}"
        if isinstance(row[C.OVERRIDE_RATE], float):
            expected = percent(row[C.OVERRIDE_RATE]) + percent_interval(row, C.OVERRIDE_RATE)
            assert shown[C.OVERRIDE_RATE] == expected
    rates = {row["race"]: row[C.OVERRIDE_RATE] for row in agreement["report"]["groups"]}
    assert rates[PLANTED_GROUP] > 0.45 > rates["White"]  # the planted bias reaches the page
    trend = chart_specs(pages["agreement"].text)["override-trend"]["data"][0]
    weeks = [row for row in agreement["report"]["trend"]]
    assert trend["x"] == [row["week"] for row in weeks]
    assert trend["y"] == [
        row[C.OVERRIDE_RATE] if isinstance(row[C.OVERRIDE_RATE], float) else None for row in weeks
    ]

    drift = api["drift"].json()
    features = Tables(pages["drift"].text).tables["features"]
    whole = [row for row in drift["report"]["features"] if row["bucket"] == "all"]
    assert len(features) == len(whole) + 1  # and the score
    for row in whole:
        if isinstance(row[C.PSI], float):
            assert features[row[C.FEATURE]][C.PSI] == f"{row[C.PSI]:.3f}"
    alerted = {alert[C.FEATURE] for alert in drift["report"]["alerts"]}
    assert "age_years" in alerted
    alerts_html = pages["drift"].text.split('id="alerts"')[1].split("</ul>")[0]
    assert all(f"<strong>{feature}</strong>" in alerts_html for feature in alerted)
    heatmap = chart_specs(pages["drift"].text)["drift-heatmap"]["data"][0]
    age = heatmap["z"][heatmap["y"].index("age_years")]
    assert age[-1] == pytest.approx(features["age_years"] and whole[0][C.PSI])
    cells = [*drift["report"]["score"], *drift["report"]["features"]]
    by_cell = {(row[C.FEATURE], row["bucket"]): row for row in cells}
    columns = [*sorted({row["bucket"] for row in cells} - {"all"}), "all"]
    for feature, line in zip(heatmap["y"], heatmap["z"], strict=True):
        for bucket, value in zip(columns, line, strict=True):
            row = by_cell.get((feature, bucket), {})
            coloured = isinstance(row.get(C.PSI), float) and row[C.PSI_LEVEL] != "underpowered"
            assert (value is not None) == coloured, (feature, bucket, row)
    assert any(row.get(C.PSI_LEVEL) == "underpowered" for row in cells)
    assert model_card.status_code == 200 and "AUROC" in model_card.text

    logged = access_rows(engine)
    api_reads, page_reads = logged[:3], logged[3:]
    assert [action for _, action, _ in page_reads] == [
        "fairness report",
        "agreement report",
        "drift report",
    ]
    assert all(actor == "s.officer" for actor, _, _ in logged)
    for (_, _, by_api), (_, _, by_page) in zip(api_reads, page_reads, strict=True):
        assert by_api == by_page  # the same parameters, so the same report


def test_suppressed_cells_are_text_in_tables_and_gaps_in_charts(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    seed_store(engine, seeded(packages[0]))
    officer = create_token(engine, "s.officer", "safety_officer")
    crossed = {"group_by": "sex,race"}
    short = {"group_by": "race", "end": "2026-03-30T12:00:00+00:00"}  # a last week of 12 hours
    with dashboard(run_bedside, packages) as (_, http):
        body = http.get(
            "/reports/fairness", params=API_WINDOW | crossed, headers=bearer(officer)
        ).json()
        trend = http.get(
            "/reports/agreement", params=API_WINDOW | short, headers=bearer(officer)
        ).json()["report"]["trend"]
        sign_in(http, officer)
        page = http.get("/dashboard/fairness", params=PAGE_WINDOW | crossed)
        pair = http.get("/dashboard/fairness", params=PAGE_WINDOW | {"group_by": ["sex", "race"]})
        agreement = http.get("/dashboard/agreement", params=PAGE_WINDOW | short)
    assert page.status_code == pair.status_code == 200
    hidden = [row for row in body["report"]["groups"] if row[C.N] == C.SUPPRESSED]
    assert hidden, "the seeded store has intersections with fewer than 10 predictions"
    tables = Tables(page.text).tables
    assert Tables(pair.text).tables == tables  # two selects name the same grouping
    for row in hidden:
        label = f"{row['sex']} × {row['race']}"
        for table in ("performance", "calibration", "disparity"):
            cells = {key: text for key, text in tables[table][label].items() if key != "_label"}
            assert not any(DIGIT.search(text) for text in cells.values()), (table, cells)
            assert C.SUPPRESSED in cells[next(iter(cells))]
    specs = chart_specs(page.text)
    hidden_labels = {f"{row['sex']} × {row['race']}" for row in hidden}
    for trace in specs["disparity"]["data"]:
        for label, x, text in zip(trace["y"], trace["x"], trace["text"], strict=True):
            if label in hidden_labels:
                assert x is None and not DIGIT.search(text.split(": ", 1)[1]), text
    drawn = {trace["name"] for trace in specs["calibration"]["data"]}
    assert not drawn & hidden_labels

    hidden_weeks = [row["week"] for row in trend if row[C.OVERRIDE_RATE] == C.SUPPRESSED]
    assert "2026-03-30" in hidden_weeks
    chart = chart_specs(agreement.text)["override-trend"]["data"][0]
    for week in hidden_weeks:
        at = chart["x"].index(week)
        assert chart["y"][at] is None
        assert chart["text"][at] == f"week of {week}: suppressed"
        assert chart["error_y"]["array"][at] == chart["error_y"]["arrayminus"][at] == 0


def test_format_html_renders_each_report_page_for_a_token_and_is_logged(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    seed_store(engine, seeded(packages[0], predictions=1500))
    officer = create_token(engine, "s.officer", "safety_officer")
    with dashboard(run_bedside, packages) as (_, http):
        pages = {
            kind: http.get(
                f"/reports/{kind}", params=API_WINDOW | {"format": "html"}, headers=bearer(officer)
            )
            for kind in ("fairness", "agreement", "drift")
        }
        bodies = {
            kind: http.get(f"/reports/{kind}", params=API_WINDOW, headers=bearer(officer)).json()
            for kind in ("fairness", "agreement", "drift")
        }
        anonymous = http.get("/reports/fairness", params=API_WINDOW | {"format": "html"})
        unknown = http.get(
            "/reports/fairness", params=API_WINDOW | {"format": "xml"}, headers=bearer(officer)
        )
    for kind, page in pages.items():
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
        assert re.search(r'src="/dashboard/assets/plotly\.min\.js\?v=\w+"', page.text), kind
        assert 'action="/dashboard/sign-out"' not in page.text  # standalone: no dashboard frame
    assert Tables(pages["fairness"].text).facts["predictions"] == f"{1500:,}"
    overall = bodies["agreement"]["report"]["overall"]
    cards = Tables(pages["agreement"].text).facts["cards"]
    assert cards == f"{overall[C.CARDS]:,}"
    drift_rows = Tables(pages["drift"].text).tables["features"]
    score = next(row for row in bodies["drift"]["report"]["score"] if row["bucket"] == "all")
    assert drift_rows["score"][C.PSI] == f"{score[C.PSI]:.3f}"
    assert anonymous.status_code == 401
    assert unknown.status_code == 400 and "json, csv, html" in unknown.text
    actions = [action for _, action, _ in access_rows(engine)]
    assert actions == ["fairness report", "agreement report", "drift report"] * 2


def test_assets_are_served_by_bedside_with_their_type_and_a_long_cache(
    run_bedside: RunBedside, packages: list[ModelPackage]
) -> None:
    with dashboard(run_bedside, packages) as (_, http):
        plotly = http.get("/dashboard/assets/plotly.min.js")
        script = http.get("/dashboard/assets/dashboard.js")
        style = http.get("/dashboard/assets/dashboard.css")
        missing = http.get("/dashboard/assets/settings.py")
        traversal = http.get("/dashboard/assets/..%2Frender.py")
    assert plotly.status_code == 200 and plotly.headers["content-type"].startswith(
        "text/javascript"
    )
    assert "plotly.js" in plotly.text[:500] and len(plotly.content) > 1_000_000
    assert "immutable" in plotly.headers["cache-control"]
    assert "max-age=31536000" in plotly.headers["cache-control"]
    assert script.status_code == 200 and "Plotly.newPlot" in script.text
    assert style.headers["content-type"].startswith("text/css")
    assert missing.status_code == 404 and traversal.status_code == 404


def test_the_model_card_and_explanations_share_the_layout_and_dashboard_reads_are_logged(
    run_bedside: RunBedside, engine: Any, packages: list[ModelPackage]
) -> None:
    seed_store(engine, seeded(packages[0], predictions=200))
    officer = create_token(engine, "s.officer", "safety_officer")
    with engine.connect() as connection:
        card = (
            connection.execute(
                select(PredictionRecord.card_uuid).where(PredictionRecord.card_shown.is_(True))
            )
            .scalars()
            .first()
        )
    with dashboard(run_bedside, packages) as (_, http):
        public_card = http.get(f"/models/{MODEL}/card")
        public_explanation = http.get(f"/explanations/{card}")
        sign_in(http, officer)
        found = http.get("/dashboard/explanations", params={"card": str(card)})
        explanation = http.get(found.headers["location"])
        unknown_model = http.get("/dashboard/models/no-such-model")
    assert public_card.status_code == 200 and "Intended use" in public_card.text
    assert 'href="/dashboard/assets/dashboard.css?v=' in public_card.text
    assert public_card.headers["x-frame-options"] == "DENY"
    assert public_explanation.status_code == 200 and "Why " in public_explanation.text
    assert found.status_code == 303 and explanation.status_code == 200
    assert "Signed in as s.officer" in explanation.text and str(card) in explanation.text
    assert unknown_model.status_code == 404
    assert [(actor, action) for actor, action, _ in access_rows(engine)] == [
        ("explanation-link", "explanation"),
        ("s.officer", "explanation"),
    ]


def test_calibration_deciles_and_auprc_are_drawn_when_the_report_has_them() -> None:
    def group(sex: str, n: Any, **values: Any) -> dict[str, Any]:
        return {"sex": sex, C.N: n, C.EVENTS: 40, C.LABELLED: n, **values}

    deciles = [
        {"sex": "female", "risk_decile": 1, C.N: 50, C.MEAN_PREDICTED: 0.12, "observed_rate": 0.2},
        {"sex": "female", "risk_decile": 0, C.N: 60, C.MEAN_PREDICTED: 0.05, "observed_rate": 0.1},
        {"sex": "male", "risk_decile": 0, C.N: C.SUPPRESSED, C.MEAN_PREDICTED: C.SUPPRESSED}
        | {"observed_rate": C.SUPPRESSED},
        {"sex": "male", "risk_decile": 1, C.N: 70, C.MEAN_PREDICTED: 0.11, "observed_rate": None},
    ]
    female = group("female", 110, auprc=0.4123, auprc_low=0.3, auprc_high=0.52, tpr=0.5)
    male = group("male", 90, auprc=C.SUPPRESSED, auprc_low=C.SUPPRESSED, tpr=0.4)
    overall = group("all", 200, auprc=0.39, auprc_low=0.31, auprc_high=0.47, tpr=0.45)
    thresholds = {"min_cell": 10, "min_events": 100, "warning": [0.8, 1.25]}
    body = {
        "model": MODEL,
        "versions": [{"version": "1.0.0"}],
        "window": {"start": "2026-01-01T00:00:00+00:00", "end": "2026-04-01T00:00:00+00:00"},
        "label": "readmission_30d",
        "threshold": 0.237,
        "group_by": ["sex"],
        "predictions": 200,
        "labelled": 200,
        "report": {
            "thresholds": thresholds | {"critical": [0.67, 1.5]},
            "reference": None,
            "overall": overall,
            "groups": [female, male],
            "calibration": deciles,
        },
    }
    html = fairness_html(body, "assets")
    chart = chart_specs(html)["calibration"]
    traces = {trace["name"]: trace for trace in chart["data"][1:]}
    assert set(traces) == {"female"}  # male: one decile suppressed, one without a rate
    assert traces["female"]["x"] == [0.05, 0.12] and traces["female"]["y"] == [0.1, 0.2]
    assert traces["female"]["text"][0] == ("female, decile 0: n 60, predicted 5.0%, observed 10.0%")
    performance = Tables(html).tables["performance"]
    assert performance["female"]["auprc"] == "0.4120.300–0.520"
    assert performance["male"]["auprc"] == C.SUPPRESSED
    assert 'src="assets/plotly.min.js?v=' in html and "disparity" not in chart_specs(html)
