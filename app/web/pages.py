"""The model card page and the explanation page that risk cards link to."""

from __future__ import annotations

from html import escape
from typing import Any
from uuid import UUID

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.access.tokens import Principal
from app.models.package import ModelPackage
from app.web.svg import waterfall
from cds_hooks.errors import ProtocolError
from cds_hooks.responses import JsonResponse

router = APIRouter(tags=["Pages"])
# Explanation links are capability URLs opened from the EHR (decision 0004); who opened one is
# not known, but that it was opened is logged.
EXPLANATION_READER = Principal("explanation-link", "clinician")
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left}.muted{color:#666}"
)


def _page(title: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}"
        f"</title><meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def _packages(request: Request) -> dict[str, ModelPackage]:
    return {package.name: package for package in request.app.state.packages}


@router.get("/models", summary="Model packages served by this instance")
async def models(request: Request) -> JsonResponse:
    return JsonResponse(
        [
            {"name": p.name, "version": p.version, "package_hash": p.package_hash}
            for p in _packages(request).values()
        ]
    )


@router.get("/models/{name}/card", summary="The model card (HTML, or JSON with format=json)")
async def model_card(request: Request, name: str, format: str = "html") -> Any:
    package = _packages(request).get(name)
    if package is None:
        raise ProtocolError.single(404, f"no model {name!r}", code="not-found")
    if format == "json":
        return JsonResponse(package.card)
    card = package.card
    performance = card["performance"]
    rows = "".join(
        f"<tr><td>{escape(label)}</td><td>{_interval(metric)}</td></tr>"
        for label, metric in (
            ("AUROC", performance["auroc"]),
            ("AUPRC", performance["auprc"]),
            *((f"{n} AUROC (baseline)", b["auroc"]) for n, b in performance["baselines"].items()),
        )
    )
    calibration = performance.get("calibration") or {}
    body = (
        f"<h1>{escape(card['title'])} — {escape(name)} v{escape(card['version'])}</h1>"
        f"<p class='muted'>Trained {escape(card['date'])}; package {package.package_hash[:12]}</p>"
        f"<h2>Intended use</h2><p>{escape(card['intended_use'])}</p>"
        f"<h2>Outcome</h2><p>{escape(card['outcome_definition'])}</p>"
        f"<h2>Performance (held-out test split, n={performance['test_n']}, "
        f"{performance['test_events']} events)</h2><table><tr><th>measure</th>"
        f"<th>value (95% CI)</th></tr>{rows}<tr><td>calibration slope</td>"
        f"<td>{calibration.get('slope', float('nan')):.2f}</td></tr></table>"
        "<h2>Inputs</h2><ul>"
        + "".join(f"<li>{escape(item['label'])}</li>" for item in card["inputs"])
        + "</ul><h2>Limitations</h2><ul>"
        + "".join(f"<li>{escape(item)}</li>" for item in card["limitations"])
        + "</ul>"
    )
    return _page(f"Model card: {name}", body)


def _interval(metric: dict[str, float] | None) -> str:
    if not metric:
        return "n/a"
    return f"{metric['value']:.3f} ({metric['low']:.3f}–{metric['high']:.3f})"


@router.get("/explanations/{card_uuid}", summary="Why a card gave the risk it gave")
async def explanation(request: Request, card_uuid: UUID) -> HTMLResponse:
    record = await request.app.state.audit.get(card_uuid)
    if record is None or not record.card_shown:
        raise ProtocolError.single(404, "no explanation for this card", code="not-found")
    await request.app.state.access_log.record(
        EXPLANATION_READER, "explanation", {"card_uuid": str(card_uuid)}
    )
    rows = orjson.loads(record.contributions)
    label_of = {row["feature"]: row["label"] for row in rows}
    missing = [label_of.get(name, name) for name in orjson.loads(record.missing)]
    final_label = f"this patient: {round(record.probability * 100)}% after calibration"
    body = (
        f"<h1>Why {round(record.probability * 100)}% ({escape(record.band)})?</h1>"
        f"<p class='muted'>Model {escape(record.model)} v{escape(record.model_version)}, "
        f"card {card_uuid}, {record.created_at:%Y-%m-%d %H:%M} UTC</p>"
        "<p>Red bars raised this patient's estimated risk, blue bars lowered it (SHAP values on "
        "the model's log-odds scale, before calibration).</p>"
        f"<figure>{waterfall(record.base_value, rows, final_label)}</figure>"
        + (
            "<h2>Inputs that were not available</h2><ul>"
            + "".join(f"<li>{escape(name)}</li>" for name in missing)
            + "</ul>"
            if missing
            else ""
        )
    )
    return _page("Risk explanation", body)
