"""Audit endpoints for safety officers: the chain heads (to anchor elsewhere) and a verification.

Each read is written to the access log first; if it cannot be, the read is refused (503).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from app.access.dependencies import require_roles
from app.access.tokens import Principal
from app.audit.ledger import heads, verify_chain
from app.audit.tables import CHAINS
from app.store.database import run_bounded

router = APIRouter(prefix="/audit", tags=["Audit"])
CALL_SECONDS = 10.0
VERIFY_SECONDS = 600.0  # a million records take about 40 s
Reader = Annotated[Principal, Depends(require_roles("safety_officer", "admin"))]


@router.get("/head", summary="The head of every audit chain")
async def audit_head(request: Request, principal: Reader) -> list[dict[str, Any]]:
    await request.app.state.access_log.record(principal, "audit head", {})
    found = await run_bounded(CALL_SECONDS, heads, request.app.state.engine)
    return [head.as_dict() for head in found]


@router.get("/verify", summary="Re-hash every audit chain and name the first broken link")
async def audit_verify(request: Request, principal: Reader) -> dict[str, Any]:
    await request.app.state.access_log.record(principal, "audit verify", {})
    engine = request.app.state.engine
    reports = {}
    for name in CHAINS:
        report = await run_bounded(VERIFY_SECONDS, verify_chain, engine, name)
        reports[name] = {
            "intact": report.broken is None,
            "records": report.records,
            "head": report.head.as_dict(),
            "broken_at": report.broken.sequence if report.broken else None,
            "reason": report.broken.reason if report.broken else None,
        }
    return {"intact": all(item["intact"] for item in reports.values()), "chains": reports}
