"""API tokens for the report, audit and outcome endpoints; only a SHA-256 of each is stored.

Tokens are 256 random bits, so a plain SHA-256 cannot be brute-forced and lookups stay one
indexed query. ``bedside token create`` prints a token once; it cannot be shown again.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.audit.tables import ApiToken

ROLES = ("safety_officer", "ingest", "admin")
TOKEN_PREFIX = "bds_"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's name and role."""

    name: str
    role: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, name: str, role: str) -> str:
    """A new token for ``name`` with ``role``; raises ValueError for a bad role or a used name."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not name or len(name) > 128:
        raise ValueError("a token name has 1 to 128 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        name=name, role=role, token_hash=token_hash(token), created_at=datetime.now(UTC)
    )
    try:
        with Session(engine) as session:
            session.add(record)
            session.commit()
    except IntegrityError:
        raise ValueError(f"a token named {name!r} exists already") from None
    return token


def revoke_token(engine: Engine, name: str) -> bool:
    """Revoke ``name``'s token; False when there is no such live token."""
    with Session(engine) as session:
        record = session.exec(
            select(ApiToken).where(ApiToken.name == name, ApiToken.revoked_at == None)  # noqa: E711
        ).first()
        if record is None:
            return False
        record.revoked_at = datetime.now(UTC)
        session.add(record)
        session.commit()
    return True


def list_tokens(engine: Engine) -> list[ApiToken]:
    with Session(engine) as session:
        return list(session.exec(select(ApiToken).order_by(ApiToken.name)))


def principal_for(engine: Engine, token: str) -> Principal | None:
    """The live token's principal, or None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    with Session(engine) as session:
        record = session.exec(
            select(ApiToken).where(
                ApiToken.token_hash == token_hash(token),
                ApiToken.revoked_at == None,  # noqa: E711
            )
        ).first()
    return Principal(record.name, record.role) if record else None
