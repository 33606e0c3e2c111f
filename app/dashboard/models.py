"""The model card and a card's explanation inside the dashboard (signed in; an explanation
opened here is logged under the officer's name)."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.dashboard.http import asset_base, dashboard_base, html_page
from app.dashboard.render import explanation_html, model_card_html
from app.dashboard.reports import chrome_for
from app.dashboard.session import Officer
from cds_hooks.errors import ProtocolError

router = APIRouter(prefix="/dashboard", include_in_schema=False)


@router.get("/models/{name}")
async def model_card(request: Request, principal: Officer, name: str) -> Response:
    served = [package for package in request.app.state.packages if package.name == name]
    if not served:
        raise ProtocolError.single(404, f"no model {name!r}", code="not-found")
    chrome = chrome_for(request, principal, {"model": name})
    return html_page(model_card_html(served[-1], asset_base(request), chrome))


@router.get("/explanations")
async def find_explanation(
    request: Request, _principal: Officer, card: Annotated[UUID, Query()]
) -> Response:
    return RedirectResponse(f"{dashboard_base(request)}/explanations/{card}", status_code=303)


@router.get("/explanations/{card_uuid}")
async def explanation(request: Request, principal: Officer, card_uuid: UUID) -> Response:
    record = await request.app.state.audit.get(card_uuid)
    if record is None or not record.card_shown:
        raise ProtocolError.single(404, "no explanation for this card", code="not-found")
    await request.app.state.access_log.record(
        principal, "explanation", {"card_uuid": str(card_uuid)}
    )
    chrome = chrome_for(request, principal, {"model": record.model})
    return html_page(explanation_html(record, card_uuid, asset_base(request), chrome))
