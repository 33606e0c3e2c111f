"""Who called: the authenticated CDS client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClientIdentity:
    iss: str
    tenant: str | None = None
    subject: str | None = None


class Unauthorized(Exception):
    """Authentication failed. The reason is for the server log only, never for the client."""
