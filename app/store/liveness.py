"""Checking a pooled PostgreSQL connection at checkout without a round trip.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` on every checkout: a round trip, and both
processes woken, before every transaction of every CDS call. A connection the server closed
(restart, failover, a terminated backend) shows it on its socket instead: PostgreSQL sends a
FATAL message and closes, so the idle socket becomes readable. Only then does libpq read it; a
connection it finds broken, or whose server said FATAL (the end of the stream can follow a
moment later), is replaced before use, as a failed ping would be. A peer that
vanished without closing (a frozen server) is found by neither check: the first statement fails
within ``tcp_user_timeout`` instead.
"""

from __future__ import annotations

import select
from typing import Any

import psycopg
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError

READS_AT_CHECKOUT = 3  # a closing server: its notice, then the end of the stream


CLOSING = "server_said_goodbye"


def replace_closed_connections(engine: Engine) -> None:
    """Have ``engine``'s pool replace, at checkout, a connection the server has closed."""
    event.listen(engine, "connect", _hear_goodbye)
    event.listen(engine, "checkout", _refuse_if_closed)


def _hear_goodbye(dbapi_connection: Any, record: Any) -> None:
    """Note the server's FATAL message when it arrives on the idle connection (libpq hands it
    to the notice handlers): its end of the stream may come a moment later."""
    info = record.info
    info[CLOSING] = False

    def on_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
        if diagnostic.severity_nonlocalized in ("FATAL", "PANIC"):
            info[CLOSING] = True

    dbapi_connection.add_notice_handler(on_notice)


def _refuse_if_closed(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    # DisconnectionError at checkout: the pool discards this connection and tries another.
    if (
        dbapi_connection.closed
        or dbapi_connection.broken
        or not _still_open(dbapi_connection)
        or record.info.get(CLOSING)
    ):
        raise DisconnectionError("the server closed the connection")


def _still_open(dbapi_connection: Any) -> bool:
    """Whether the idle connection is usable, reading only what already arrived: a closing
    server's notice then the end of the stream break it; anything else (a notification, a TLS
    message) is taken in and harmless. A socket that stays readable is not trusted."""
    fileno, pgconn = dbapi_connection.fileno(), dbapi_connection.pgconn
    for _ in range(READS_AT_CHECKOUT):
        if not _readable(fileno):
            return bool(pgconn.status == pq.ConnStatus.OK)
        try:
            pgconn.consume_input()
            pgconn.is_busy()  # parses what was read: a FATAL message reaches the notice handlers
        except psycopg.OperationalError:
            return False
    return False


def _readable(fileno: int) -> bool:
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))
