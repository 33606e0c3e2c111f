"""The files a report page loads: plotly.js from the plotly package (no CDN), our script and
style sheet. Served under ``/dashboard/assets/`` with long cache lifetimes: their URLs carry a
version, so a new release is fetched anew."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path
from typing import Annotated

import plotly
from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from cds_hooks.errors import ProtocolError

STATIC = Path(__file__).resolve().parent / "static"
PLOTLY = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
MEDIA_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
LONG_CACHE = "public, max-age=31536000, immutable"

router = APIRouter(prefix="/dashboard/assets", include_in_schema=False)


def asset_files() -> list[Path]:
    """The files a rendered page refers to by name: copy them beside standalone HTML files."""
    return [PLOTLY, STATIC / "dashboard.js", STATIC / "dashboard.css"]


@cache
def asset_version() -> str:
    """A digest of the asset files' contents, appended to their URLs to break caches."""
    digest = hashlib.sha256()
    for path in asset_files():
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


@router.get("/{name}")
async def asset(name: Annotated[str, PathParam(max_length=64)]) -> FileResponse:
    found = {path.name: path for path in asset_files()}.get(name)
    if found is None:
        raise ProtocolError.single(404, "no such asset", code="not-found")
    headers = {"Cache-Control": LONG_CACHE, "X-Content-Type-Options": "nosniff"}
    return FileResponse(found, media_type=MEDIA_TYPES[found.suffix], headers=headers)
