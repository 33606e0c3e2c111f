"""Checking a pooled PostgreSQL connection at checkout without a round trip.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: a round trip, and both
processes woken, before every transaction of every CDS call. A connection the server closed
(restart, failover, a terminated backend) shows it on its socket instead: PostgreSQL sends a
FATAL message and closes, so the idle socket becomes readable, and an idle connection otherwise
has nothing to read (Bedside does not LISTEN). A readable or broken connection is replaced
before use, as a failed ping would be. A peer that vanished without closing (a frozen server)
is found by neither check: the first statement fails within ``tcp_user_timeout`` instead.
"""

from __future__ import annotations

import select
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError


def replace_closed_connections(engine: Engine) -> None:
    """Have ``engine``'s pool replace, at checkout, a connection the server has closed."""
    event.listen(engine, "checkout", _refuse_if_closed)


def _refuse_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    # DisconnectionError at checkout: the pool discards this connection and tries another.
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    if _readable(dbapi_connection.fileno()):
        raise DisconnectionError("the server closed the connection or sent unasked data")


def _readable(fileno: int) -> bool:
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
