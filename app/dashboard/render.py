"""Report pages rendered from report bodies with Jinja2 templates.

``fairness_html``, ``agreement_html`` and ``drift_html`` give a page that stands alone (the
``format=html`` answers, and files written next to copies of :func:`asset_files`); the
dashboard renders the same templates inside its navigation and parameter form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from uuid import UUID

import orjson
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from app.audit.tables import PredictionRecord
from app.dashboard import charts
from app.dashboard.assets import asset_files, asset_version
from app.dashboard.format import group_label, interval, number, shown
from app.models.package import ModelPackage
from app.web.svg import waterfall
from fairness import columns as C

__all__ = [
    "Chrome",
    "agreement_html",
    "asset_files",
    "drift_html",
    "explanation_html",
    "fairness_html",
    "model_card_html",
    "render",
]

TEMPLATES = Path(__file__).resolve().parent / "templates"
ENVIRONMENT = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENVIRONMENT.globals.update(
    C=C,
    shown=shown,
    interval=interval,
    group_label=group_label,
    number=number,
    metric_names=charts.METRIC_NAMES,
)
CHARTS = {
    "fairness": (charts.calibration_chart, charts.disparity_chart),
    "agreement": (charts.override_trend_chart, charts.reasons_chart),
    "drift": (charts.drift_heatmap, charts.flag_rate_chart),
}


@dataclass(frozen=True)
class Chrome:
    """What the dashboard puts around a page: its base path, the signed-in name, the served
    models and the current parameters (for the navigation links and the form)."""

    base: str
    principal: str
    models: Sequence[str]
    query: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def link(self, page: str, **extra: str) -> str:
        """A dashboard URL keeping the model and window."""
        keep = {key: self.query[key] for key in ("model", "start", "end") if self.query.get(key)}
        keep |= extra
        return f"{self.base}/{page}" + (f"?{urlencode(keep)}" if keep else "")


def render(template: str, asset_base: str, chrome: Chrome | None = None, **context: Any) -> str:
    """Render ``template`` with its assets under ``asset_base`` (a URL prefix or folder)."""
    version = asset_version()

    def asset(name: str) -> str:
        return f"{asset_base.rstrip('/')}/{name}?v={version}"

    return ENVIRONMENT.get_template(template).render(asset=asset, chrome=chrome, **context)


def report_charts(kind: str, body: Mapping[str, Any] | None) -> list[charts.Chart]:
    """The charts of a ``kind`` report that have something to draw."""
    if body is None:
        return []
    built = (build(body) for build in CHARTS[kind])
    return [chart for chart in built if chart is not None]


def report_page(
    kind: str,
    body: Mapping[str, Any] | None,
    asset_base: str,
    chrome: Chrome | None = None,
    error: str | None = None,
) -> str:
    """The ``kind`` ("fairness", "agreement", "drift") report page; ``error`` instead of a body
    when the parameters were refused."""
    return render(
        f"{kind}.html",
        asset_base,
        chrome,
        body=body,
        charts=report_charts(kind, body),
        error=error,
    )


def fairness_html(body: Mapping[str, Any], asset_base: str) -> str:
    """The fairness report body as a standalone page."""
    return report_page("fairness", body, asset_base)


def agreement_html(body: Mapping[str, Any], asset_base: str) -> str:
    """The agreement report body as a standalone page."""
    return report_page("agreement", body, asset_base)


def drift_html(body: Mapping[str, Any], asset_base: str) -> str:
    """The drift report body as a standalone page."""
    return report_page("drift", body, asset_base)


def model_card_html(package: ModelPackage, asset_base: str, chrome: Chrome | None = None) -> str:
    """A package's model card: intended use, outcome, test performance, inputs, limitations."""
    return render(
        "model_card.html",
        asset_base,
        chrome,
        name=package.name,
        card=package.card,
        package_hash=package.package_hash,
        charts=[],
    )


def explanation_html(
    record: PredictionRecord, card_uuid: UUID, asset_base: str, chrome: Chrome | None = None
) -> str:
    """Why a card gave its risk: the SHAP waterfall of its prediction record, missing inputs."""
    rows = orjson.loads(record.contributions)
    label_of = {row["feature"]: row["label"] for row in rows}
    percent = round(record.probability * 100)
    final_label = f"this patient: {percent}% after calibration"
    return render(
        "explanation.html",
        asset_base,
        chrome,
        record=record,
        card_uuid=card_uuid,
        percent=percent,
        waterfall=Markup(waterfall(record.base_value, rows, final_label)),
        missing=[label_of.get(name, name) for name in orjson.loads(record.missing)],
        charts=[],
    )
