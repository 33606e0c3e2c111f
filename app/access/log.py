"""The access log: every read of audit data or a report, chained like the audit records."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy.engine import Engine

from app.access.tokens import Principal
from app.audit.ledger import locked_chain
from app.store.database import call_bound, run_bounded


def access_row(principal: Principal, action: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": datetime.now(UTC),
        "actor": principal.name,
        "role": principal.role,
        "action": action,
        "parameters": orjson.dumps(dict(parameters), option=orjson.OPT_SORT_KEYS).decode(),
    }


def record_access_sync(
    engine: Engine,
    principal: Principal,
    action: str,
    parameters: Mapping[str, Any],
    timeout_seconds: float,
) -> None:
    """Commit one access record (raises AuditUnavailable; the read must then not happen)."""
    with locked_chain(engine, "access", timeout_seconds) as chain:
        chain.append(access_row(principal, action, parameters))


class AccessLog:
    def __init__(self, engine: Engine, timeout_seconds: float) -> None:
        self.engine = engine
        self.timeout = timeout_seconds

    async def record(
        self, principal: Principal, action: str, parameters: Mapping[str, Any]
    ) -> None:
        await run_bounded(
            call_bound(self.timeout),
            record_access_sync,
            self.engine,
            principal,
            action,
            parameters,
            self.timeout,
        )
