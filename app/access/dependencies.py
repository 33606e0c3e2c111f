"""FastAPI dependencies: the caller's API token, checked against the roles an endpoint allows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.access.tokens import Principal, principal_for
from app.store.database import call_bound, run_bounded
from cds_hooks.errors import ProtocolError

bearer = HTTPBearer(auto_error=False, description="an API token from `bedside token create`")


def require_roles(*roles: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that answers 401 without a live token and 403 for another role."""

    async def principal(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ProtocolError.single(401, "an API token is required", code="login")
        bound = call_bound(request.app.state.settings.audit_write_timeout_seconds)
        found = await run_bounded(
            bound, principal_for, request.app.state.engine, credentials.credentials
        )
        if found is None:
            raise ProtocolError.single(401, "the API token is unknown or revoked", code="login")
        if found.role not in roles:
            raise ProtocolError.single(
                403, f"this needs the role {' or '.join(roles)}", code="forbidden"
            )
        return found

    return principal
