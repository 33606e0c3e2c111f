"""JSON log lines with a request id. Never pass patient data or tokens to a logger.

Exceptions are logged as their type and stack only: their messages often quote the data that
failed (a patient id in a URL, a token in a header), so they are left out.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import traceback
from datetime import UTC, datetime
from typing import Any

import orjson

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)

# Record attributes that are not extras; uvicorn's color_message repeats the message.
_STANDARD_ATTRIBUTES = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",
}
# Loggers that would write URLs (and so patient ids) at INFO.
_QUIET_LOGGERS = ("httpx", "httpcore", "uvicorn.access")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id and extras."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = _stack_without_messages(record.exc_info[1])
        return orjson.dumps(line, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _stack_without_messages(error: BaseException) -> str:
    """The traceback of ``error`` and the types of the exceptions it chains, never messages."""
    types: list[str] = []
    current: BaseException | None = error
    while current is not None and len(types) < 10:
        types.append(f"{type(current).__module__}.{type(current).__qualname__}")
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    stack = "".join(traceback.format_tb(error.__traceback__))
    return f"Traceback (most recent call last):\n{stack}{' <- '.join(types)}"


def configure_logging(level: str = "INFO") -> None:
    """Send every log line to stderr as JSON (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    quiet_http_loggers()


def quiet_http_loggers() -> None:
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
