"""``GET /reports/agreement``: how clinicians respond to the cards, for a safety officer.

Each read is written to the access log before the report is computed and served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.access.tokens import Principal
from app.dashboard.render import agreement_html
from app.reports.agreement_queries import AgreementQuery, agreement_counts
from app.reports.common import (
    Reader,
    check_format,
    check_label,
    csv_context,
    formatted,
    logged_report,
    report_thresholds,
    sectioned_csv,
    served_package,
    time_window,
    utc,
)
from app.reports.queries import DEFAULT_LABEL
from cds_hooks.errors import ProtocolError
from fairness.agreement import agreement_report, metric_columns, reason_columns, trend_columns

router = APIRouter(prefix="/reports", tags=["Reports"])


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
    check_format(format)
    body = await agreement_body(request, principal, model, start, end, group_by, label)
    return formatted(request, format, body, agreement_csv, agreement_html)


async def agreement_body(
    request: Request,
    principal: Principal,
    model: str,
    start: datetime,
    end: datetime,
    group_by: str = "model_version",
    label: str = DEFAULT_LABEL,
) -> dict[str, Any]:
    """Check the parameters, log the read, compute the report: the body every format shows."""
    check_label(label)
    served_package(request, model)
    try:
        query = AgreementQuery(model, utc(start), utc(end), group_by, label)
    except ValueError as error:
        raise ProtocolError.single(400, str(error)) from None
    parameters = {"model": model, **time_window(query.start, query.end), "group_by": group_by}
    parameters["label"] = label
    groups, weeks, versions = await logged_report(
        request,
        principal,
        "agreement report",
        parameters,
        agreement_counts,
        request.app.state.engine,
        query,
    )
    return {
        "model": model,
        "versions": versions,
        "window": time_window(query.start, query.end),
        "label": label,
        "group_by": group_by,
        "report": agreement_report(
            groups, (group_by,), weeks, report_thresholds(request.app.state.settings)
        ),
    }


def agreement_csv(body: dict[str, Any]) -> str:
    """One table: ``section`` "group" rows (and the whole population), then "reason" and "trend"
    rows, each prefixed by the model, versions, window and label."""
    report, attribute = body["report"], body["group_by"]
    context = csv_context(body, "label")
    columns = [attribute, *metric_columns(), *reason_columns(), *trend_columns()]
    sections = (
        ("group", [*report["groups"], report["overall"]]),
        ("reason", report["reasons"]),
        ("trend", report["trend"]),
    )
    return sectioned_csv(context, columns, sections)
