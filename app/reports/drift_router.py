"""``GET /reports/drift``: covariate and score drift against the package's training reference,
for a safety officer.

Each read is written to the access log before the report is computed and served.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.access.tokens import Principal
from app.dashboard.render import drift_html
from app.models.package import ModelPackage
from app.reports.common import (
    Reader,
    check_format,
    csv_context,
    drift_thresholds,
    formatted,
    logged_report,
    sectioned_csv,
    served_package,
    time_window,
    utc,
)
from app.reports.drift_queries import DriftQuery, drift_counts
from cds_hooks.errors import ProtocolError
from fairness import columns as C
from fairness.drift import drift_columns, drift_report, flag_columns

router = APIRouter(prefix="/reports", tags=["Reports"])


def expected_flag_rate(package: ModelPackage) -> float | None:
    """The high band's flag rate on the package's test split, if it stores one."""
    found = package.evaluation.get("test", {}).get("thresholds", {}).get("high", {})
    rate = found.get("flag_rate")
    return float(rate[0]) if isinstance(rate, list) and rate else None


@router.get("/drift", summary="Feature and score drift against the training reference")
async def drift(
    request: Request,
    principal: Reader,
    model: str,
    start: datetime,
    end: datetime,
    window: str = "week",
    missing_difference: float | None = None,
    feature_share: float | None = None,
    format: str = "json",
) -> Response:
    check_format(format)
    body = await drift_body(
        request, principal, model, start, end, window, missing_difference, feature_share
    )
    return formatted(request, format, body, drift_csv, drift_html)


async def drift_body(
    request: Request,
    principal: Principal,
    model: str,
    start: datetime,
    end: datetime,
    window: str = "week",
    missing_difference: float | None = None,
    feature_share: float | None = None,
) -> dict[str, Any]:
    """Check the parameters, log the read, compute the report: the body every format shows."""
    package = served_package(request, model)
    if not (
        (missing_difference is None or 0 <= missing_difference <= 1)
        and (feature_share is None or 0 < feature_share <= 1)
    ):
        raise ProtocolError.single(400, "missing_difference is in [0, 1], feature_share in (0, 1]")
    try:
        query = DriftQuery(model, utc(start), utc(end), window)
    except ValueError as error:
        raise ProtocolError.single(400, str(error)) from None
    thresholds = drift_thresholds(request.app.state.settings, missing_difference, feature_share)
    parameters = {"model": model, **time_window(query.start, query.end), "window": window}
    parameters.update(missing_difference=missing_difference, feature_share=feature_share)
    cells, flags = await logged_report(
        request,
        principal,
        "drift report",
        parameters,
        drift_counts,
        request.app.state.engine,
        query,
        package.reference,
    )
    now = datetime.now(UTC)
    complete = sorted({bucket for bucket, _, _ in flags if query.complete(bucket, now)})
    report = drift_report(
        cells, flags, package.reference, complete, expected_flag_rate(package), thresholds
    )
    return {
        "model": model,
        "version": package.version,
        "window": time_window(query.start, query.end),
        "granularity": window,
        "report": report,
    }


def drift_csv(body: dict[str, Any]) -> str:
    """One table: ``section`` "feature", "score", "flag_rate" and "alert" rows, each prefixed by
    the model, version, window and granularity."""
    report = body["report"]
    context = {**csv_context(body), "window": body["granularity"]}
    columns = [C.FEATURE, "bucket", *drift_columns(), *flag_columns(), C.EXPECTED_FLAG_RATE, "kind"]
    sections = (
        ("feature", report["features"]),
        ("score", report["score"]),
        ("flag_rate", report["flag_rate"]),
        ("alert", report["alerts"]),
    )
    return sectioned_csv(context, columns, sections)
