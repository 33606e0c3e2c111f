"""``bedside token create | list | revoke``: API tokens for reports, audit reads and outcomes."""

from __future__ import annotations

import argparse
import sys

from app.access.tokens import ROLES, create_token, list_tokens, revoke_token
from app.settings import Settings
from app.store.database import make_engine
from app.store.migrate import upgrade_engine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="print a new token (shown once, stored hashed)")
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--name", required=True, help="who or what holds it (unique)")
    actions.add_parser("list", help="the tokens' names, roles and states (never the tokens)")
    revoke = actions.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("--name", required=True)


def run(args: argparse.Namespace) -> int:
    engine = make_engine(Settings().database_url)
    try:
        upgrade_engine(engine)
        if args.action == "create":
            try:
                print(create_token(engine, args.name, args.role))
            except ValueError as error:
                print(str(error), file=sys.stderr)
                return 2
        elif args.action == "list":
            for token in list_tokens(engine):
                state = f"revoked {token.revoked_at:%Y-%m-%d}" if token.revoked_at else "live"
                print(f"{token.name}\t{token.role}\t{token.created_at:%Y-%m-%d}\t{state}")
        elif not revoke_token(engine, args.name):
            print(f"no live token named {args.name!r}", file=sys.stderr)
            return 1
        return 0
    finally:
        engine.dispose()
