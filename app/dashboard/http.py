"""What every dashboard answer shares: its URL paths and the security headers of a page."""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse

# Scripts only from Bedside itself (charts are drawn by dashboard.js from JSON data blocks);
# plotly.js sets inline styles, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def html_page(content: str, status_code: int = 200) -> HTMLResponse:
    """An HTML page with the strict headers: no framing, scripts from Bedside only, not cached."""
    return HTMLResponse(content, status_code=status_code, headers=PAGE_HEADERS)


def public_path(request: Request) -> str:
    """The path prefix of ``BEDSIDE_PUBLIC_URL`` ("" unless behind a proxy with a prefix)."""
    return urlsplit(request.app.state.settings.public_url).path.rstrip("/")


def dashboard_base(request: Request) -> str:
    """The URL path the dashboard pages live under."""
    return f"{public_path(request)}/dashboard"


def asset_base(request: Request) -> str:
    """The URL path of plotly.min.js, dashboard.js and dashboard.css."""
    return f"{dashboard_base(request)}/assets"


def is_https(request: Request) -> bool:
    return request.app.state.settings.public_url.lower().startswith("https://")
