"""JWT replay memory in the database, so that it holds across workers and replicas."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Field, Session, SQLModel

from app.store.database import StoreUnavailable, run_bounded
from app.store.timestamps import UtcDateTime


class SeenToken(SQLModel, table=True):
    """A token id seen before its expiry; only a hash of issuer and jti is kept."""

    __tablename__ = "seen_token"

    token_hash: str = Field(primary_key=True, max_length=64)
    expires_at: datetime = Field(sa_type=UtcDateTime, index=True)


class SqlReplayGuard:
    """``first_use`` inserts the token hash; the primary key makes a replay fail atomically."""

    def __init__(
        self, engine: Engine, purge_every_seconds: float = 60.0, bound_seconds: float = 4.0
    ) -> None:
        self._engine = engine
        self._bound = bound_seconds
        self._purge_every = purge_every_seconds
        self._last_purge = 0.0

    async def first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        return await run_bounded(self._bound, self._first_use, iss, jti, expires_at)

    def _first_use(self, iss: str, jti: str, expires_at: datetime) -> bool:
        token_hash = hashlib.sha256(f"{iss}\x00{jti}".encode()).hexdigest()
        try:
            with Session(self._engine) as session:
                self._purge_expired(session)
                session.add(SeenToken(token_hash=token_hash, expires_at=expires_at))
                session.commit()
        except IntegrityError:
            return False
        except SQLAlchemyError as error:
            raise StoreUnavailable("the JWT replay memory cannot be written") from error
        return True

    def _purge_expired(self, session: Session) -> None:
        now = time.monotonic()
        if now - self._last_purge < self._purge_every:
            return
        self._last_purge = now
        session.execute(delete(SeenToken).where(SeenToken.expires_at < datetime.now(UTC)))
        session.commit()
