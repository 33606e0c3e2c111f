"""``GET /reports/fairness``: subgroup performance and disparities for a safety officer.

Each read is written to the access log before the report is computed and served.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from app.access.dependencies import require_roles
from app.access.tokens import Principal
from app.reports.formats import fairness_csv
from app.reports.queries import DEFAULT_LABEL, FairnessQuery, fairness_counts
from cds_hooks.errors import ProtocolError
from cds_hooks.responses import JsonResponse
from fairness.report import ReportThresholds, fairness_report

router = APIRouter(prefix="/reports", tags=["Reports"])
Reader = Annotated[Principal, Depends(require_roles("safety_officer", "admin"))]
FORMATS = ("json", "csv")
HIGH_BAND = "high"


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _high_threshold(request: Request, model: str) -> float:
    for package in request.app.state.packages:
        if package.name == model:
            for band in package.bands:
                if band.name == HIGH_BAND:
                    return float(band.lower)
            raise ProtocolError.single(400, f"model {model!r} has no {HIGH_BAND!r} band")
    raise ProtocolError.single(400, f"unknown model {model!r}", code="not-found")


@router.get("/fairness", summary="Subgroup performance and disparity ratios (JSON or CSV)")
async def fairness(
    request: Request,
    principal: Reader,
    model: str,
    start: datetime,
    end: datetime,
    group_by: str = "sex",
    label: str = DEFAULT_LABEL,
    threshold: Annotated[float | None, Query(ge=0, le=1)] = None,
    format: str = "json",
) -> Response:
    if format not in FORMATS:
        raise ProtocolError.single(400, f"format is one of {', '.join(FORMATS)}")
    used = _high_threshold(request, model) if threshold is None else threshold
    try:
        query = FairnessQuery(
            model, _utc(start), _utc(end), tuple(group_by.split(",")), used, label
        )
    except ValueError as error:
        raise ProtocolError.single(400, str(error)) from None
    parameters = {
        "model": model,
        "start": query.start.isoformat(),
        "end": query.end.isoformat(),
        "group_by": group_by,
        "label": label,
        "threshold": threshold,
        "format": format,
    }
    await request.app.state.access_log.record(principal, "fairness report", parameters)
    groups, versions = await anyio.to_thread.run_sync(
        fairness_counts, request.app.state.engine, query
    )
    body: dict[str, Any] = {
        "model": model,
        "versions": versions,
        "window": {"start": query.start.isoformat(), "end": query.end.isoformat()},
        "label": label,
        "threshold": used,
        "group_by": list(query.group_by),
        "predictions": sum(group.n for group in groups),
        "labelled": sum(group.labelled for group in groups),
        "report": fairness_report(groups, query.group_by, ReportThresholds()),
    }
    if format == "csv":
        return Response(fairness_csv(body, query.group_by), media_type="text/csv")
    return JsonResponse(body)
