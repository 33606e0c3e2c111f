"""All dashboard routes: sign-in, assets, the overview and report pages, models."""

from __future__ import annotations

from fastapi import APIRouter

from app.dashboard import assets, models, reports, session

router = APIRouter()
for part in (session.router, assets.router, reports.router, models.router):
    router.include_router(part)
