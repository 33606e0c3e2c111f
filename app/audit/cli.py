"""``bedside audit verify | head | export | purge``: the audit store from the command line.

Reads of audit data from here are written to the access log like API reads, with the operating
system user as the actor (role ``database``: whoever holds the database credentials).
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from app.access.log import record_access_sync
from app.access.tokens import Principal
from app.audit.export import export_tables, write_export
from app.audit.ledger import heads, purge_before, reindex, verify_chain
from app.audit.tables import CHAINS
from app.settings import Settings
from app.store.database import make_engine
from app.store.migrate import upgrade_engine

# Purge and reindex rewrite the report index: minutes on a large store, not seconds.
MAINTENANCE_TIMEOUT_SECONDS = 900.0


def cli_principal() -> Principal:
    return Principal(f"cli:{getpass.getuser()}", "database")


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="check every hash chain; non-zero when broken")
    verify.add_argument("--chain", choices=sorted(CHAINS), help="only this chain")
    actions.add_parser("head", help="print the head of every chain (JSON), to anchor elsewhere")
    export = actions.add_parser("export", help="predictions and events for seismometer")
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--model", help="only this model")
    export.add_argument("--start", type=_instant, help="predictions from (ISO 8601)")
    export.add_argument("--end", type=_instant, help="predictions before (ISO 8601)")
    export.add_argument("--label", default="readmission_30d", help="the outcome used as target")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    purge = actions.add_parser(
        "purge", help="delete predictions, feedback and outcomes older than the retention"
    )
    purge.add_argument(
        "--before", type=_instant, help="cut-off (default: now - BEDSIDE_AUDIT_RETENTION_DAYS)"
    )
    actions.add_parser(
        "reindex", help="derive the report index again from the chains (after a restore)"
    )


def run(args: argparse.Namespace) -> int:
    settings = Settings()
    engine = make_engine(settings.database_url)
    try:
        upgrade_engine(engine)
        return ACTIONS[args.action](args, settings, engine)
    finally:
        engine.dispose()


def _verify(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    record_access_sync(
        engine,
        cli_principal(),
        "audit verify",
        {"chain": args.chain},
        settings.audit_write_timeout_seconds,
    )
    failed = False
    for name in [args.chain] if args.chain else CHAINS:
        report = verify_chain(engine, name)
        if report.broken is None:
            print(
                f"{name}: intact, {report.records} records, head {report.head.sequence} "
                f"{report.head.hash}"
            )
        else:
            failed = True
            print(f"{name}: BROKEN at record {report.broken.sequence}: {report.broken.reason}")
    return 1 if failed else 0


def _head(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    record_access_sync(
        engine, cli_principal(), "audit head", {}, settings.audit_write_timeout_seconds
    )
    print(json.dumps([head.as_dict() for head in heads(engine)], indent=2))
    return 0


def _export(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    parameters = {
        "format": args.format,
        "model": args.model,
        "start": args.start.isoformat() if args.start else None,
        "end": args.end.isoformat() if args.end else None,
        "label": args.label,
    }
    record_access_sync(
        engine, cli_principal(), "audit export", parameters, settings.audit_write_timeout_seconds
    )
    predictions, events = export_tables(engine, args.label, args.model, args.start, args.end)
    result = write_export(predictions, events, args.out, args.format, args.label)
    print(
        f"exported {result.predictions} predictions and {result.events} events: "
        + ", ".join(str(path) for path in result.files)
    )
    return 0


def _purge(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    cutoff = args.before
    if cutoff is None:
        if settings.audit_retention_days is None:
            print("set BEDSIDE_AUDIT_RETENTION_DAYS or give --before", file=sys.stderr)
            return 2
        cutoff = datetime.now(UTC) - timedelta(days=settings.audit_retention_days)
    record_access_sync(
        engine,
        cli_principal(),
        "audit purge",
        {"before": cutoff.isoformat()},
        settings.audit_write_timeout_seconds,
    )
    removed = purge_before(engine, cutoff, MAINTENANCE_TIMEOUT_SECONDS)
    for name, count in removed.items():
        print(f"{name}: {count} records before {cutoff.isoformat()} deleted")
    return 0


def _reindex(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    record_access_sync(
        engine, cli_principal(), "audit reindex", {}, settings.audit_write_timeout_seconds
    )
    print(f"report index: {reindex(engine, MAINTENANCE_TIMEOUT_SECONDS)} predictions indexed")
    return 0


ACTIONS = {
    "verify": _verify,
    "head": _head,
    "export": _export,
    "purge": _purge,
    "reindex": _reindex,
}
