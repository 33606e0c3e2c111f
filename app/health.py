"""Liveness, readiness and metrics endpoints for orchestrators and Prometheus."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy.engine import Engine

from app.audit.predictions import PredictionAudit
from app.store.database import ping
from cds_hooks.responses import JsonResponse

router = APIRouter(tags=["Operations"])
# Orchestrators give up on a probe after a few seconds: answer "not ready" before they do.
READY_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz", summary="Readiness: database reachable, audit store taking writes, packages loaded"
)
async def readyz(request: Request) -> JsonResponse:
    state = request.app.state
    replay = getattr(state, "replay_engine", state.engine)
    database_ok = await _database_answers(state.engine) and (
        replay is state.engine or await _database_answers(replay)
    )
    audit_ok = database_ok and await _audit_writable(state.audit)
    runtime = getattr(state, "cds", None)
    checks = {
        "database": "ok" if database_ok else "unreachable",
        "audit": "ok" if audit_ok else "not taking writes",
        "started": runtime is not None,
        "services": len(runtime.registry) if runtime is not None else 0,
    }
    ready = database_ok and audit_ok and runtime is not None
    return JsonResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _database_answers(engine: Engine) -> bool:
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        return await anyio.to_thread.run_sync(ping, engine, abandon_on_cancel=True)
    return False


async def _audit_writable(audit: PredictionAudit) -> bool:
    """Whether the audit store takes writes now (its chain lock can be had)."""
    with anyio.move_on_after(READY_TIMEOUT_SECONDS):
        return await audit.writable(min(audit.timeout, READY_TIMEOUT_SECONDS / 2))
    return False


@router.get("/metrics", summary="Prometheus metrics")
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
