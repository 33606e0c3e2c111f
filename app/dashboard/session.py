"""Signing in to the dashboard with an API token.

The token (role safety_officer or admin) is kept in an HttpOnly, SameSite=Strict cookie and
checked against the token store on every page, so revoking it signs the officer out. It is
never logged, echoed or put in a URL.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from app.access.tokens import Principal, principal_for
from app.dashboard.http import dashboard_base, html_page, is_https, public_path
from app.dashboard.render import render
from app.store.database import call_bound, run_bounded

COOKIE = "bedside_dashboard"
READER_ROLES = ("safety_officer", "admin")
SESSION_SECONDS = 12 * 3600

router = APIRouter(prefix="/dashboard", include_in_schema=False)


async def token_principal(request: Request, token: str) -> Principal | None:
    """The live token's principal, looked up off the event loop within the store's bound."""
    bound = call_bound(request.app.state.settings.audit_write_timeout_seconds)
    return await run_bounded(bound, principal_for, request.app.state.engine, token)


async def signed_in(request: Request) -> Principal:
    """The signed-in reader; without one, a 303 to the sign-in form (coming back afterwards)."""
    token = request.cookies.get(COOKIE)
    principal = await token_principal(request, token) if token else None
    if principal is None or principal.role not in READER_ROLES:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        location = f"{dashboard_base(request)}/sign-in?next={quote(here, safe='')}"
        raise HTTPException(303, "sign in first", headers={"Location": location})
    return principal


Officer = Annotated[Principal, Depends(signed_in)]


def _next_page(request: Request, wanted: str) -> str:
    """Where to go after signing in: a dashboard path of this service, else the overview."""
    base = dashboard_base(request)
    parts = urlsplit(wanted)
    local = not (parts.scheme or parts.netloc) and "\\" not in wanted and "//" not in wanted
    if local and parts.path.startswith(f"{base}/") and not parts.path.startswith(f"{base}/sign-"):
        return wanted
    return f"{base}/"


def _form(request: Request, wanted: str, message: str | None, status_code: int) -> Response:
    page = render(
        "sign_in.html",
        f"{dashboard_base(request)}/assets",
        base=dashboard_base(request),
        next=_next_page(request, wanted),
        message=message,
        charts=[],
    )
    return html_page(page, status_code)


@router.get("/sign-in")
async def sign_in_form(request: Request, next: str = "") -> Response:
    return _form(request, next, None, 200)


@router.post("/sign-in")
async def sign_in(
    request: Request,
    token: Annotated[str, Form(max_length=512)] = "",
    next: Annotated[str, Form(max_length=2048)] = "",
) -> Response:
    principal = await token_principal(request, token.strip()) if token.strip() else None
    if principal is None:
        return _form(request, next, "That token is unknown or has been revoked.", 401)
    if principal.role not in READER_ROLES:
        message = f"The dashboard needs a token with the role {' or '.join(READER_ROLES)}."
        return _form(request, next, message, 403)
    response = RedirectResponse(_next_page(request, next), status_code=303)
    response.set_cookie(
        COOKIE,
        token.strip(),
        max_age=SESSION_SECONDS,
        path=public_path(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    response = RedirectResponse(f"{dashboard_base(request)}/sign-in", status_code=303)
    response.delete_cookie(
        COOKIE,
        path=public_path(request) or "/",
        secure=is_https(request),
        httponly=True,
        samesite="strict",
    )
    return response
