"""``GET /reports/agreement``: how clinicians respond to the cards, for a safety officer.

Each read is written to the access log before the report is computed and served.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from app.access.dependencies import require_roles
from app.access.tokens import Principal
from app.reports.agreement_queries import AgreementQuery, agreement_counts
from app.reports.queries import DEFAULT_LABEL
from app.reports.router import FORMATS
from cds_hooks.errors import ProtocolError
from cds_hooks.responses import JsonResponse
from fairness.agreement import agreement_report, metric_columns, reason_columns, trend_columns
from fairness.report import ReportThresholds

router = APIRouter(prefix="/reports", tags=["Reports"])
Reader = Annotated[Principal, Depends(require_roles("safety_officer", "admin"))]
CONTEXT = ("section", "model", "versions", "start", "end", "label")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@router.get("/agreement", summary="Clinician responses to the cards and agreement (JSON or CSV)")
async def agreement(
    request: Request,
    principal: Reader,
    model: str,
    start: datetime,
    end: datetime,
    group_by: str = "model_version",
    label: str = DEFAULT_LABEL,
    format: str = "json",
) -> Response:
    if format not in FORMATS:
        raise ProtocolError.single(400, f"format is one of {', '.join(FORMATS)}")
    if not any(package.name == model for package in request.app.state.packages):
        raise ProtocolError.single(400, f"unknown model {model!r}", code="not-found")
    try:
        query = AgreementQuery(model, _utc(start), _utc(end), group_by, label)
    except ValueError as error:
        raise ProtocolError.single(400, str(error)) from None
    parameters = {
        "model": model,
        "start": query.start.isoformat(),
        "end": query.end.isoformat(),
        "group_by": group_by,
        "label": label,
        "format": format,
    }
    await request.app.state.access_log.record(principal, "agreement report", parameters)
    groups, weeks, versions = await anyio.to_thread.run_sync(
        agreement_counts, request.app.state.engine, query
    )
    body: dict[str, Any] = {
        "model": model,
        "versions": versions,
        "window": {"start": query.start.isoformat(), "end": query.end.isoformat()},
        "label": label,
        "group_by": group_by,
        "report": agreement_report(groups, (group_by,), weeks, ReportThresholds()),
    }
    if format == "csv":
        return Response(agreement_csv(body), media_type="text/csv")
    return JsonResponse(body)


def agreement_csv(body: dict[str, Any]) -> str:
    """One table: ``section`` "group" rows (and the whole population), then "reason" and "trend"
    rows, each prefixed by the model, versions, window and label."""
    report, attribute = body["report"], body["group_by"]
    columns = [attribute, *metric_columns(), *reason_columns(), *trend_columns()]
    header = [*CONTEXT, *dict.fromkeys(columns)]
    context = {
        "model": body["model"],
        "versions": " ".join(seen["version"] for seen in body["versions"]),
        "start": body["window"]["start"],
        "end": body["window"]["end"],
        "label": body["label"],
    }
    sections = (
        ("group", [*report["groups"], report["overall"]]),
        ("reason", report["reasons"]),
        ("trend", report["trend"]),
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\n")
    writer.writeheader()
    for section, rows in sections:
        for row in rows:
            cleaned = {k: "" if v is None else v for k, v in row.items()}
            writer.writerow({"section": section, **context, **cleaned})
    return out.getvalue()
