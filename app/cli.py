"""The ``bedside`` command line."""

from __future__ import annotations

import argparse
import gc
import logging
from collections.abc import Sequence

import uvicorn
from uvicorn.config import STARTUP_FAILURE

from app.access import cli as token_cli
from app.audit import cli as audit_cli
from app.audit.pseudonym import pseudonymizer_for
from app.demo import cli as demo_cli
from app.logs import configure_logging
from app.outcomes import sync as outcomes_sync
from app.reports import cli as report_cli
from app.serving import end_with_supervisor, serve_workers
from app.settings import Settings
from app.store import migrate
from app.store.database import make_engine
from app.store.migrate import upgrade_engine
from app.training import synth, train


def create_app_from_environment():  # type: ignore[no-untyped-def]
    """Uvicorn factory: settings from the environment, JSON logs configured (one per worker)."""
    from app.factory import create_app
    from fhir_mappers.validation import load_models

    end_with_supervisor()
    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    load_models()
    # The models, the FHIR model classes and the web stack are loaded for good: leave them out of
    # every later collection (each full pass over them took ~100 ms, the tail of the latency).
    gc.collect()
    gc.freeze()
    gc.set_threshold(*WORKER_GC_THRESHOLDS)
    return app


# A call allocates ~10,000 objects (the parsed body alone thousands) that live for the call:
# at Python's default (700, 10, 10) they are collected and promoted several times per call
# (0.16 ms of the 0.58 ms an orjson parse of the median body takes); at 20,000 most are freed by
# reference counting before any collection sees them. Cycles are still collected every few
# thousand calls. Decision 0009.
WORKER_GC_THRESHOLDS = (20_000, 50, 100)
WORKER_STARTUP_SECONDS = 60


def serve(args: argparse.Namespace) -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    if settings.insecure_dev_auth:
        from app.factory import INSECURE_WARNING

        logging.getLogger("bedside").warning(INSECURE_WARNING)
    config = uvicorn.Config(
        "app.cli:create_app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_config=None,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        # A worker imports the model stack (LightGBM, SHAP) before it answers the supervisor's
        # health check: seconds on a busy node, past uvicorn's 5-second default.
        timeout_worker_healthcheck=WORKER_STARTUP_SECONDS,
    )
    if config.workers > 1:
        serve_workers(config)  # a listening socket per worker (app.serving)
        return 0
    server = uvicorn.Server(config)
    server.run()
    return 0 if server.started else STARTUP_FAILURE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bedside", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="start the service (uvicorn)")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8000)
    serve_parser.add_argument("--workers", type=int, default=1)
    serve_parser.add_argument(
        "--proxy-headers", action="store_true", help="trust X-Forwarded-* from the proxies below"
    )
    serve_parser.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    serve_parser.set_defaults(run=serve)

    synth_parser = commands.add_parser("synth", help="write a synthetic FHIR cohort (Bulk NDJSON)")
    synth.add_arguments(synth_parser)
    synth_parser.set_defaults(run=synth.run)

    train_parser = commands.add_parser("train", help="train, evaluate and package a model")
    train.add_arguments(train_parser)
    train_parser.set_defaults(run=train.run)

    db_parser = commands.add_parser("db", help="manage the database (db upgrade: migrate it)")
    migrate.add_arguments(db_parser)
    db_parser.set_defaults(run=migrate.run)

    audit_parser = commands.add_parser(
        "audit", help="verify, anchor, export or purge the audit store"
    )
    audit_cli.add_arguments(audit_parser)
    audit_parser.set_defaults(run=audit_cli.run)

    token_parser = commands.add_parser("token", help="API tokens for reports and outcomes")
    token_cli.add_arguments(token_parser)
    token_parser.set_defaults(run=token_cli.run)

    outcomes_parser = commands.add_parser("outcomes", help="derive outcomes from FHIR data")
    outcomes_sync.add_arguments(outcomes_parser)
    outcomes_parser.set_defaults(run=run_outcomes)

    report_parser = commands.add_parser(
        "report", help="write the reports as HTML, CSV and JSON; exit 3 on alerts (for cron)"
    )
    report_cli.add_arguments(report_parser)
    report_parser.set_defaults(run=report_cli.run)

    demo_parser = commands.add_parser("demo", help="replay a simulated EHR day; open the dashboard")
    demo_cli.add_arguments(demo_parser)
    demo_parser.set_defaults(run=demo_cli.run)
    return parser


def run_outcomes(args: argparse.Namespace) -> int:
    settings = Settings()
    key = settings.audit_hmac_key.get_secret_value() if settings.audit_hmac_key else None
    engine = make_engine(settings.database_url)
    try:
        upgrade_engine(engine)
        pseudonyms = pseudonymizer_for(settings.database_url, key)
        return outcomes_sync.run(args, engine, pseudonyms, settings.audit_write_timeout_seconds)
    finally:
        engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
