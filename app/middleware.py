"""ASGI middleware: request id, access log, metrics, last-resort 500 and the body limit."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.logs import request_id_var
from app.metrics import Metrics
from cds_hooks.errors import issue, operation_outcome
from cds_hooks.responses import FhirJsonResponse

log = logging.getLogger("bedside.access")
error_log = logging.getLogger("bedside.errors")
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class BodyTooLarge(Exception):
    """The request body passed the configured limit (answered with 413)."""


class ObservabilityMiddleware:
    """Tags each request with an id, logs it (route template, never the query) and counts it.

    An exception no handler caught is logged here, inside the request's context, and answered
    with a 500 OperationOutcome: it never reaches the server, which would log it again, message
    included, and drop the client's keep-alive connection.
    """

    def __init__(
        self, app: ASGIApp, metrics: Metrics, is_known_service: Callable[[str], bool]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.is_known_service = is_known_service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        status = 500
        response_started = False
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            error_log.error("unhandled error", exc_info=error)
            if not response_started:
                await _internal_error()(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            self._record(scope, status, elapsed)
            request_id_var.reset(token)

    def _record(self, scope: Scope, status: int, elapsed: float) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "other"
        self.metrics.requests.labels(method, route, str(status)).inc()
        self.metrics.request_seconds.labels(route).observe(elapsed)
        service_id = scope.get("path_params", {}).get("service_id")
        if (
            route == "/cds-services/{service_id}"
            and service_id
            and self.is_known_service(service_id)
        ):
            self.metrics.service_seconds.labels(service_id).observe(elapsed)
            if status != 200:
                self.metrics.service_errors.labels(service_id, str(status)).inc()
        log.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed * 1000, 2),
            },
        )


def _internal_error() -> FhirJsonResponse:
    """The 500 body: it never says what failed (the message may carry patient data)."""
    outcome = operation_outcome([issue("internal error", code="exception", severity="fatal")])
    return FhirJsonResponse(outcome, status_code=500)


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            candidate = value.decode("latin-1")
            if _SAFE_REQUEST_ID.match(candidate):
                return candidate
    return uuid.uuid4().hex


class BodyLimitMiddleware:
    """Refuses bodies over ``max_bytes``: by Content-Length up front, or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, reject: ASGIApp) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self.reject(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        await self.app(scope, limited_receive, send)
