"""The dashboard overview and report pages: the same parameters as ``/reports/*`` with
defaults (the served model, the last 90 days), read through the reports' ``*_body`` functions
so that each read is in the access log under the signed-in officer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from app.access.tokens import Principal
from app.dashboard.http import asset_base, dashboard_base, html_page
from app.dashboard.render import Chrome, render, report_page
from app.dashboard.session import Officer
from app.reports.agreement_queries import GROUPINGS
from app.reports.agreement_router import agreement_body
from app.reports.drift_router import drift_body
from app.reports.queries import COHORT_COLUMNS, DEFAULT_LABEL
from app.reports.router import fairness_body
from cds_hooks.errors import ProtocolError

DEFAULT_DAYS = 90
router = APIRouter(prefix="/dashboard", include_in_schema=False)


class BadParameter(ValueError):
    """A form value the dashboard cannot read; shown on the page."""


def default_window(today: date | None = None) -> tuple[str, str]:
    """The last 90 days, today included: midnight UTC 89 days ago to tomorrow's midnight."""
    today = today or datetime.now(UTC).date()
    end = today + timedelta(days=1)
    return (end - timedelta(days=DEFAULT_DAYS)).isoformat(), end.isoformat()


def _moment(name: str, value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise BadParameter(f"{name} is a date (2026-01-31) or an ISO 8601 time") from None


def _number(name: str, value: str | None) -> float | None:
    if value is None or not value.strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise BadParameter(f"{name} is a number") from None


def chrome_for(request: Request, principal: Principal, query: Mapping[str, str | None]) -> Chrome:
    """The page frame: the given parameters over the defaults (the served model, 90 days)."""
    models = list(dict.fromkeys(package.name for package in request.app.state.packages))
    start, end = default_window()
    shown = {key: value for key, value in query.items() if value}
    shown = {"model": models[0] if models else "", "start": start, "end": end} | shown
    return Chrome(
        base=dashboard_base(request),
        principal=principal.name,
        models=models,
        query=shown,
        choices={"group_by": COHORT_COLUMNS, "agreement_group_by": GROUPINGS},
    )


async def _report(
    request: Request,
    kind: str,
    chrome: Chrome,
    read: Callable[[datetime, datetime], Awaitable[dict[str, Any]]],
) -> Response:
    """Read the report for the chrome's window, or show why it could not be read."""
    try:
        start = _moment("start", chrome.query["start"])
        end = _moment("end", chrome.query["end"])
        body = await read(start, end)
    except BadParameter as error:
        return html_page(report_page(kind, None, asset_base(request), chrome, str(error)), 400)
    except ProtocolError as error:
        page = report_page(kind, None, asset_base(request), chrome, str(error))
        return html_page(page, error.status_code)
    return html_page(report_page(kind, body, asset_base(request), chrome))


@router.get("", include_in_schema=False)
async def overview_slash(request: Request) -> Response:
    return RedirectResponse(f"{dashboard_base(request)}/", status_code=307)


@router.get("/")
async def overview(
    request: Request,
    principal: Officer,
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
) -> Response:
    chrome = chrome_for(request, principal, {"model": model, "start": start, "end": end})
    page = render(
        "index.html", asset_base(request), chrome, packages=request.app.state.packages, charts=[]
    )
    return html_page(page)


@router.get("/fairness")
async def fairness(
    request: Request,
    principal: Officer,
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
    group_by: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    label: str = DEFAULT_LABEL,
    threshold: str | None = None,
) -> Response:
    grouping = ",".join(part for value in group_by for part in value.split(",") if part)
    query = {"model": model, "start": start, "end": end, "group_by": grouping or "sex"}
    chrome = chrome_for(request, principal, query | {"label": label, "threshold": threshold})

    async def read(since: datetime, until: datetime) -> dict[str, Any]:
        cut = _number("threshold", threshold)
        q = chrome.query
        return await fairness_body(
            request, principal, q["model"], since, until, q["group_by"], label, cut
        )

    return await _report(request, "fairness", chrome, read)


@router.get("/agreement")
async def agreement(
    request: Request,
    principal: Officer,
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
    group_by: str = "model_version",
    label: str = DEFAULT_LABEL,
) -> Response:
    query = {"model": model, "start": start, "end": end, "group_by": group_by, "label": label}
    chrome = chrome_for(request, principal, query)

    async def read(since: datetime, until: datetime) -> dict[str, Any]:
        model = chrome.query["model"]
        return await agreement_body(request, principal, model, since, until, group_by, label)

    return await _report(request, "agreement", chrome, read)


@router.get("/drift")
async def drift(
    request: Request,
    principal: Officer,
    model: str | None = None,
    start: str | None = None,
    end: str | None = None,
    window: str = "week",
    missing_difference: str = "",
    feature_share: str = "",
) -> Response:
    query = {"model": model, "start": start, "end": end, "window": window}
    query |= {"missing_difference": missing_difference, "feature_share": feature_share}
    chrome = chrome_for(request, principal, query)

    async def read(since: datetime, until: datetime) -> dict[str, Any]:
        missing = _number("missing_difference", missing_difference)
        share = _number("feature_share", feature_share)
        return await drift_body(
            request,
            principal,
            chrome.query["model"],
            since,
            until,
            window,
            missing,
            share,
        )

    return await _report(request, "drift", chrome, read)
