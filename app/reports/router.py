"""``GET /reports/fairness``: subgroup performance and disparities for a safety officer.

Each read is written to the access log before the report is computed and served.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from app.access.tokens import Principal
from app.dashboard.render import fairness_html
from app.models.package import ModelPackage
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
from app.reports.queries import DEFAULT_LABEL, FairnessQuery, fairness_counts
from cds_hooks.errors import ProtocolError
from fairness import columns as C
from fairness.calibration import calibration_columns
from fairness.report import fairness_report, metric_columns

router = APIRouter(prefix="/reports", tags=["Reports"])
HIGH_BAND = "high"


def _high_threshold(package: ModelPackage) -> float:
    for band in package.bands:
        if band.name == HIGH_BAND:
            return float(band.lower)
    raise ProtocolError.single(400, f"model {package.name!r} has no {HIGH_BAND!r} band")


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
    """The fairness report. The body's "predictions" and "labelled" totals are the overall
    row's n and labelled, which complementary suppression protects (a 1–9 total is suppressed,
    and a total minus the shown groups never gives a hidden group's count)."""
    check_format(format)
    body = await fairness_body(request, principal, model, start, end, group_by, label, threshold)
    return formatted(request, format, body, fairness_csv, fairness_html)


async def fairness_body(
    request: Request,
    principal: Principal,
    model: str,
    start: datetime,
    end: datetime,
    group_by: str = "sex",
    label: str = DEFAULT_LABEL,
    threshold: float | None = None,
) -> dict[str, Any]:
    """Check the parameters, log the read, compute the report: the body every format shows."""
    check_label(label)
    package = served_package(request, model)
    if threshold is not None and not 0 <= threshold <= 1:
        raise ProtocolError.single(400, "threshold is in [0, 1]")
    used = _high_threshold(package) if threshold is None else threshold
    try:
        query = FairnessQuery(model, utc(start), utc(end), tuple(group_by.split(",")), used, label)
    except ValueError as error:
        raise ProtocolError.single(400, str(error)) from None
    parameters = {"model": model, **time_window(query.start, query.end), "group_by": group_by}
    parameters.update(label=label, threshold=threshold)
    groups, versions = await logged_report(
        request,
        principal,
        "fairness report",
        parameters,
        fairness_counts,
        request.app.state.engine,
        query,
    )
    report = fairness_report(groups, query.group_by, report_thresholds(request.app.state.settings))
    return {
        "model": model,
        "versions": versions,
        "window": time_window(query.start, query.end),
        "label": label,
        "threshold": used,
        "group_by": list(query.group_by),
        "predictions": report["overall"][C.N],
        "labelled": report["overall"][C.LABELLED],
        "report": report,
    }


def fairness_csv(body: dict[str, Any]) -> str:
    """One table: ``section`` "group" rows (one per group and one for the whole population),
    then "calibration" rows (group × risk decile), each prefixed by the model, versions, window,
    label and threshold used."""
    report = body["report"]
    context = csv_context(body, "label", "threshold")
    columns = [
        *body["group_by"],
        *metric_columns(report["reference"] is not None),
        *calibration_columns(),
    ]
    sections = (
        ("group", [*report["groups"], report["overall"]]),
        ("calibration", report["calibration"]),
    )
    return sectioned_csv(context, columns, sections)
