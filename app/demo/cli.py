"""``bedside demo``: start Bedside on SQLite, replay a simulated EHR day, show the dashboard."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import shutil
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from app.access.tokens import create_token
from app.demo.client_keys import DemoClientKey
from app.demo.cohort import OVERRIDE_GROUP, all_resources, make_stays
from app.demo.fhir_server import DemoFhirServer
from app.demo.replay import Ehr, ReplaySummary, replay
from app.demo.service import BedsideProcess
from app.demo.threaded_server import free_port, serving
from app.store.database import make_engine

MARKER = ".bedside-demo"
DEFAULT_PATIENTS = 1000
"""Enough for every age band's override rate to clear the reports' small-cell suppression
(``BEDSIDE_REPORT_MIN_CELL``, 10): the smallest band, 18-44, is about 14 % of the patients and
overridden at ``OVERRIDE_RATE_BASE``; at 200 even the 75+ band's rate was hidden."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("var/demo"), help="the demo's folder")
    parser.add_argument(
        "--patients",
        type=int,
        default=DEFAULT_PATIENTS,
        help="patients discharged (fewer leave the small age bands' override rates suppressed)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--port", type=int, default=8000, help="Bedside's port (0: any free)")
    parser.add_argument(
        "--exit-after-replay", action="store_true", help="stop instead of serving on"
    )


def fresh_folder(folder: Path) -> Path:
    """``folder``, emptied if an earlier demo made it; refuses a non-empty foreign folder."""
    folder = folder.resolve()
    if folder.exists() and any(folder.iterdir()):
        if not (folder / MARKER).exists():
            raise SystemExit(f"{folder} is not empty and not a demo folder; choose another --dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MARKER).write_text("made by bedside demo; emptied by the next run\n")
    return folder


def run(args: argparse.Namespace) -> int:
    if args.patients < 1:
        print("--patients must be at least 1", file=sys.stderr)
        return 2
    began = time.monotonic()
    signal.signal(signal.SIGTERM, _interrupt)  # stop the child on SIGTERM too, not only Ctrl-C
    folder = fresh_folder(args.dir)
    stays = make_stays(folder / "cohort", args.patients, args.seed, datetime.now(UTC).date())
    print(f"cohort: {len(stays)} discharges of {args.patients} synthetic patients", flush=True)
    key = DemoClientKey()
    database_url = f"sqlite:///{folder / 'bedside.db'}"
    environment = {
        "BEDSIDE_DATABASE_URL": database_url,
        "BEDSIDE_CLIENTS_FILE": str(key.write_clients_file(folder / "clients.json")),
        "BEDSIDE_INSECURE_DEV_AUTH": "false",
        "BEDSIDE_LOG_LEVEL": "WARNING",
    }
    service = BedsideProcess(args.port or free_port(), environment, folder / "bedside.log")
    fhir = DemoFhirServer(all_resources(stays), access_token=secrets.token_urlsafe(24))
    engine = make_engine(database_url)
    try:
        with serving(fhir.app()) as fhir_url:
            service.start()
            ingest = create_token(engine, "demo-lab-feed", "ingest")
            ehr = Ehr(service.base_url, fhir_url, fhir.access_token, key, ingest)
            summary = asyncio.run(replay(stays, ehr, args.seed))
            officer = create_token(engine, "demo-safety-officer", "safety_officer")
            print_summary(summary, fhir.requests, time.monotonic() - began)
            print(f"Dashboard: {service.base_url}/dashboard/", flush=True)
            print(f"Token: {officer}", flush=True)
            attribute, value = OVERRIDE_GROUP
            print(
                f"Sign in with the token; Agreement grouped by {attribute} shows the planted "
                f"overrides ({value}), Fairness the outcomes.",
                flush=True,
            )
            if args.exit_after_replay:
                return 0 if summary.complete else 1
            print("Serving until Ctrl-C (FHIR test server too).", flush=True)
            try:
                code = service.wait()
            except KeyboardInterrupt:
                print("\nstopping", flush=True)
                return 0
            print(f"bedside serve stopped (exit code {code}); see {service.log_path}")
            return 0 if code == 0 else 1
    finally:
        service.stop()
        engine.dispose()


def _interrupt(_signal: int, _frame: object) -> None:
    raise KeyboardInterrupt


def print_summary(summary: ReplaySummary, fhir_requests: int, seconds: float) -> None:
    attribute, value = OVERRIDE_GROUP
    statuses = _counts(summary.statuses)
    bands = ", ".join(f"{band} {n}" for band, n in sorted(summary.bands.items()))
    answers = ", ".join(f"{name} {n}" for name, n in sorted(summary.answers.items()))
    group = ", ".join(f"{name} {n}" for name, n in sorted(summary.group_answers.items()))
    lines = [
        f"discharges: {summary.discharges} (HTTP {statuses}); "
        f"{summary.fetched_by_bedside} without prefetch, fetched by Bedside from the demo "
        f"FHIR server ({fhir_requests} FHIR requests)",
        f"cards: {bands}",
        f"clinicians: {answers}; of them {attribute} {value} (planted: more overrides): {group}"
        f" (feedback HTTP {_counts(summary.feedback_statuses)})",
        f"outcomes: {summary.outcomes_sent} readmission labels posted with an ingest token",
        f"replay done in {seconds:.1f} s",
    ]
    print("\n".join(lines), flush=True)


def _counts(statuses: Counter[int]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items()))
