"""``bedside report --out DIR``: the fairness, agreement and drift reports of every served model
as HTML, CSV and JSON files, for a cron job; exit status 3 with a summary when a configured alert
threshold is crossed.

The reports are computed exactly as the endpoints compute them (the same body functions, the
deployment's thresholds) and each read is written to the access log as the CLI's user.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.requests import Request

from app.audit.cli import cli_principal
from app.dashboard.render import agreement_html, asset_files, drift_html, fairness_html
from app.reports.agreement_router import agreement_body, agreement_csv
from app.reports.drift_router import drift_body, drift_csv
from app.reports.router import fairness_body, fairness_csv
from app.settings import Settings
from app.store.migrate import upgrade_engine
from cds_hooks.errors import ProtocolError
from fairness import columns as C

ALERTS_EXIT = 3


@dataclass(frozen=True)
class Alert:
    model: str
    report: str
    what: str

    def line(self) -> str:
        return f"{self.model} {self.report}: {self.what}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write the reports in")
    parser.add_argument("--model", action="append", help="only this model (repeatable)")
    parser.add_argument("--end", type=_instant, help="window end (ISO 8601; default now)")
    parser.add_argument("--start", type=_instant, help="window start (default: end − --days)")
    parser.add_argument("--days", type=int, default=7, help="window length (default 7)")
    parser.add_argument(
        "--group-by",
        action="append",
        help="fairness grouping, one or two columns joined by ',' (repeatable; default: sex, "
        "race and age_band, one report each)",
    )
    parser.add_argument(
        "--agreement-group-by", default="band", help="agreement grouping (default: band)"
    )
    parser.add_argument("--window", choices=("week", "month"), default="week", help="drift")
    parser.add_argument(
        "--disparity-alerts",
        type=_metrics,
        default=(),
        help="disparity ratios that also raise fairness alerts, e.g. tpr,fnr (default: none; "
        "calibration within a group always does: disparities in flag rate or TPR follow "
        "differences in base rates and are shown, not alerted, unless chosen)",
    )
    parser.add_argument(
        "--alert-level",
        choices=("warning", "critical"),
        default="critical",
        help="the disparity or calibration flag that raises a fairness alert",
    )


def run(args: argparse.Namespace) -> int:
    from app.factory import create_app

    settings = Settings()
    app = create_app(settings)
    try:
        alerts = asyncio.run(write_reports(app, args, settings))
    except ProtocolError as error:
        reasons = "; ".join(issue.get("diagnostics", "") for issue in error.issues)
        print(f"bedside report: {reasons}", file=sys.stderr)
        return 2
    finally:
        app.state.engine.dispose()
    summary = [alert.line() for alert in alerts]
    (args.out / "alerts.json").write_bytes(
        orjson.dumps([alert.__dict__ for alert in alerts], option=orjson.OPT_INDENT_2)
    )
    if summary:
        print(f"{len(summary)} alert(s):\n" + "\n".join(f"  {line}" for line in summary))
        return ALERTS_EXIT
    print(f"no alerts; reports in {args.out}")
    return 0


async def write_reports(app: FastAPI, args: argparse.Namespace, settings: Settings) -> list[Alert]:
    """Write every report of every chosen model; the alerts they raise."""
    upgrade_engine(app.state.engine)
    end = args.end or datetime.now(UTC)
    start = args.start or end - timedelta(days=args.days)
    request = Request({"type": "http", "app": app, "method": "GET", "path": "/", "headers": []})
    principal = cli_principal()
    served = list(dict.fromkeys(package.name for package in app.state.packages))
    alerts: list[Alert] = []
    for model in args.model or served:
        folder = args.out / model
        folder.mkdir(parents=True, exist_ok=True)
        for path in asset_files():
            shutil.copyfile(path, folder / path.name)
        for group_by in args.group_by or ["sex", "race", "age_band"]:
            body = await fairness_body(request, principal, model, start, end, group_by)
            name = "fairness-" + group_by.replace(",", "-")
            _write(folder, name, body, fairness_csv, fairness_html)
            alerts += fairness_alerts(model, body, args.alert_level, args.disparity_alerts)
        body = await agreement_body(request, principal, model, start, end, args.agreement_group_by)
        _write(folder, "agreement", body, agreement_csv, agreement_html)
        alerts += agreement_alerts(model, body, settings.report_override_rate_alert)
        body = await drift_body(request, principal, model, start, end, args.window)
        _write(folder, "drift", body, drift_csv, drift_html)
        alerts += drift_alerts(model, body)
    return alerts


def fairness_alerts(
    model: str, body: Mapping[str, Any], level: str, disparities: Sequence[str] = ()
) -> list[Alert]:
    """Groups whose calibration, or one of the chosen ``disparities``, is flagged at ``level``
    or worse."""
    levels = {"critical"} if level == "critical" else {"warning", "critical"}
    flags = {C.CALIBRATION_FLAG: "calibration"}
    flags |= {name + C.RATIO + C.FLAG: f"{name} ratio" for name in disparities}
    attributes = body["group_by"]
    found = []
    for row in body["report"]["groups"]:
        group = ", ".join(f"{name}={row[name]}" for name in attributes)
        for flag, metric in flags.items():
            if row.get(flag) in levels:
                found.append(Alert(model, "fairness", f"{group}: {metric} {row[flag]}"))
    return found


def agreement_alerts(model: str, body: Mapping[str, Any], rate: float) -> list[Alert]:
    """Rows whose override rate is, with 95% confidence, above ``rate``."""
    report, attribute = body["report"], body["group_by"]
    found = []
    for row in [*report["groups"], report["overall"]]:
        low = row.get(C.OVERRIDE_RATE + C.LOW)
        if isinstance(low, float) and low > rate:
            group = f"{attribute}={row.get(attribute, 'all')}"
            what = f"override rate {row[C.OVERRIDE_RATE]:.2f}, 95% CI above {rate}"
            found.append(Alert(model, "agreement", f"{group}: {what}"))
    return found


def drift_alerts(model: str, body: Mapping[str, Any]) -> list[Alert]:
    """The drift report's own alert list."""
    return [
        Alert(model, "drift", f"{alert[C.FEATURE]} {alert['kind']} in {alert['bucket']}")
        for alert in body["report"]["alerts"]
    ]


def _write(
    folder: Path,
    name: str,
    body: Mapping[str, Any],
    to_csv: Callable[[dict[str, Any]], str],
    to_html: Callable[[Mapping[str, Any], str], str],
) -> None:
    (folder / f"{name}.json").write_bytes(orjson.dumps(body, option=orjson.OPT_INDENT_2))
    (folder / f"{name}.csv").write_text(to_csv(dict(body)))
    (folder / f"{name}.html").write_text(to_html(body, "."))


def _metrics(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = set(names) - set(C.DISPARITY_METRICS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown {', '.join(sorted(unknown))}; one of {', '.join(C.DISPARITY_METRICS)}"
        )
    return names


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
