"""What every report endpoint shares: the reader role, request checks, the logged and bounded
computation, and the sectioned CSV layout."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from fastapi.responses import Response

from app.access.dependencies import require_roles
from app.access.tokens import Principal
from app.dashboard.http import asset_base, html_page
from app.models.package import ModelPackage
from app.settings import Settings
from app.store.database import run_bounded
from cds_hooks.errors import ProtocolError
from cds_hooks.responses import JsonResponse
from fairness.drift import DriftThresholds
from fairness.report import ReportThresholds

Reader = Annotated[Principal, Depends(require_roles("safety_officer", "admin"))]
FORMATS = ("json", "csv", "html")
# A report over a million predictions takes seconds; past this the database is not answering.
REPORT_SECONDS = 120.0
Result = TypeVar("Result")
LABEL = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")


def report_thresholds(settings: Settings) -> ReportThresholds:
    """The fairness and agreement thresholds this deployment is configured with."""
    return ReportThresholds(
        min_cell=settings.report_min_cell,
        min_events=settings.report_min_events,
        warning=settings.report_disparity_warning,
        critical=settings.report_disparity_critical,
    )


def drift_thresholds(
    settings: Settings,
    missing_difference: float | None = None,
    feature_share: float | None = None,
) -> DriftThresholds:
    """The configured drift thresholds; a request may override the two alert rules."""
    return DriftThresholds(
        min_cell=settings.report_min_cell,
        psi_warn=settings.drift_psi_warn,
        psi_alert=settings.drift_psi_alert,
        missing_difference=(
            settings.drift_missing_difference if missing_difference is None else missing_difference
        ),
        feature_share=settings.drift_feature_share if feature_share is None else feature_share,
    )


def utc(moment: datetime) -> datetime:
    """Query times without a zone are UTC; an instant that UTC cannot hold is a 400."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ProtocolError.single(
            400, "start and end must lie within years 1 to 9999 in UTC"
        ) from None


def check_label(label: str) -> None:
    """Outcome labels are the names ``POST /outcomes`` accepts."""
    if not LABEL.fullmatch(label):
        raise ProtocolError.single(400, "label is 1-64 of a-z, 0-9, '_', '.' and '-'")


def check_format(format: str) -> None:
    if format not in FORMATS:
        raise ProtocolError.single(400, f"format is one of {', '.join(FORMATS)}")


def served_package(request: Request, model: str) -> ModelPackage:
    """The served package named ``model`` (the last one loaded); 400 when none is."""
    served = [package for package in request.app.state.packages if package.name == model]
    if not served:
        raise ProtocolError.single(400, f"unknown model {model!r}", code="not-found")
    return served[-1]


async def logged_report(
    request: Request,
    principal: Principal,
    action: str,
    parameters: Mapping[str, Any],
    compute: Callable[..., Result],
    *args: Any,
) -> Result:
    """Write the read to the access log, then run ``compute`` off the event loop, bounded."""
    await request.app.state.access_log.record(principal, action, parameters)
    return await run_bounded(REPORT_SECONDS, compute, *args)


def time_window(start: datetime, end: datetime) -> dict[str, str]:
    """The report's time window as it is shown and logged."""
    return {"start": start.isoformat(), "end": end.isoformat()}


def formatted(
    request: Request,
    format: str,
    body: dict[str, Any],
    as_csv: Callable[[dict[str, Any]], str],
    as_html: Callable[[dict[str, Any], str], str],
) -> Response:
    """The report body as JSON, CSV or the dashboard's HTML page."""
    if format == "csv":
        return Response(as_csv(body), media_type="text/csv")
    if format == "html":
        return html_page(as_html(body, asset_base(request)))
    return JsonResponse(body)


def csv_context(body: Mapping[str, Any], *names: str) -> dict[str, Any]:
    """What prefixes every CSV row: the model, the versions (or version), the window, ``names``."""
    context: dict[str, Any] = {"model": body["model"]}
    if "versions" in body:
        context["versions"] = " ".join(seen["version"] for seen in body["versions"])
    else:
        context["version"] = body["version"]
    context.update(body["window"])
    context.update({name: body[name] for name in names})
    return context


def sectioned_csv(
    context: Mapping[str, Any],
    columns: Sequence[str],
    sections: Iterable[tuple[str | None, Iterable[Mapping[str, Any]]]],
) -> str:
    """One table: each row prefixed by ``context`` (and its section, when sections are named);
    missing values are empty cells."""
    sections = list(sections)
    named = any(section is not None for section, _ in sections)
    header = [*(["section"] if named else []), *context, *dict.fromkeys(columns)]
    out = io.StringIO()
    writer = csv.DictWriter(out, header, restval="", lineterminator="\n")
    writer.writeheader()
    for section, rows in sections:
        prefix = {"section": section} if named else {}
        for row in rows:
            cleaned = {key: "" if value is None else value for key, value in row.items()}
            writer.writerow({**prefix, **context, **cleaned})
    return out.getvalue()
