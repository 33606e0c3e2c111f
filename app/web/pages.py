"""The model card page and the explanation page that risk cards link to, in the dashboard's
layout (its templates and style sheet, no script)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from app.access.tokens import Principal
from app.dashboard.http import asset_base, html_page
from app.dashboard.render import explanation_html, model_card_html
from app.models.package import ModelPackage
from cds_hooks.errors import ProtocolError
from cds_hooks.responses import JsonResponse

router = APIRouter(tags=["Pages"])
# Explanation links are capability URLs opened from the EHR (decision 0004); who opened one is
# not known, but that it was opened is logged.
EXPLANATION_READER = Principal("explanation-link", "clinician")


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
    return html_page(model_card_html(package, asset_base(request)))


@router.get("/explanations/{card_uuid}", summary="Why a card gave the risk it gave")
async def explanation(request: Request, card_uuid: UUID) -> HTMLResponse:
    record = await request.app.state.audit.get(card_uuid)
    if record is None or not record.card_shown:
        raise ProtocolError.single(404, "no explanation for this card", code="not-found")
    await request.app.state.access_log.record(
        EXPLANATION_READER, "explanation", {"card_uuid": str(card_uuid)}
    )
    return html_page(explanation_html(record, card_uuid, asset_base(request)))
