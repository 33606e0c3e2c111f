"""The CDS Hooks endpoints: discovery, service calls and feedback."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from cds_hooks.auth.identity import ClientIdentity, Unauthorized
from cds_hooks.auth.verifier import Authenticator
from cds_hooks.contexts import validate_context
from cds_hooks.errors import ProtocolError, issue, operation_outcome, validation_issues
from cds_hooks.feedback import FeedbackStore
from cds_hooks.models import DiscoveryResponse, FeedbackEntry, HookRequest
from cds_hooks.openapi import (
    FEEDBACK_EXAMPLE,
    HOOK_REQUEST_EXAMPLE,
    feedback_schema,
    hook_request_schema,
    json_request_body,
)
from cds_hooks.registry import CdsService, HookCall, ServiceRegistry
from cds_hooks.responses import JsonResponse
from fhir_mappers.fhir_client import FhirClient
from fhir_mappers.prefetch import PrefetchPlan, PrefetchUnavailable, resolve_prefetch

log = logging.getLogger(__name__)


@dataclass
class CdsRuntime:
    """What the CDS endpoints need, built by the app factory and kept on ``app.state.cds``."""

    registry: ServiceRegistry
    authenticator: Authenticator
    feedback_store: FeedbackStore
    http: httpx.AsyncClient
    public_base: str
    fhir_budget_seconds: float
    fhir_max_pages: int


class AuthenticationFailed(Exception):
    """Raised by the auth dependency; answered with a bare 401."""


async def get_runtime(request: Request) -> CdsRuntime:
    runtime: CdsRuntime | None = getattr(request.app.state, "cds", None)
    if runtime is None:
        raise ProtocolError.single(503, "the service is starting", code="transient")
    return runtime


Runtime = Annotated[CdsRuntime, Depends(get_runtime)]


async def authenticated_client(request: Request, runtime: Runtime) -> ClientIdentity:
    """Verify the caller's JWT; ``aud`` must be the public URL of exactly this endpoint."""
    path = request.scope["path"]
    root_path = request.scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :]
    try:
        return await runtime.authenticator.authenticate(
            request.headers.get("authorization"), runtime.public_base + path
        )
    except Unauthorized as reason:
        log.info("client authentication failed", extra={"reason": str(reason)})
        raise AuthenticationFailed from None


Client = Annotated[ClientIdentity, Depends(authenticated_client)]
router = APIRouter(tags=["CDS Hooks"])


@router.get("/cds-services", summary="CDS Hooks discovery")
async def discovery(runtime: Runtime, client: Client) -> JsonResponse:
    services = [service.description_entry() for service in runtime.registry]
    return JsonResponse(DiscoveryResponse(services=services).to_wire())


@router.post(
    "/cds-services/{service_id}",
    summary="Call a CDS service",
    description="A CDS Hooks request for the service's hook. The context is validated against "
    "the hook's definition; prefetch the request lacks is fetched from `fhirServer`.",
    openapi_extra=json_request_body(hook_request_schema(), HOOK_REQUEST_EXAMPLE),
)
async def call_service(
    service_id: str, request: Request, runtime: Runtime, client: Client
) -> JsonResponse:
    service = _service_or_404(runtime, service_id)
    body = await json_body(request)
    try:
        hook_request = HookRequest.model_validate(body)
    except ValidationError as error:
        raise ProtocolError(400, validation_issues(error)) from None
    if hook_request.hook != service.hook:
        raise ProtocolError.single(
            400, f"service {service.id!r} answers hook {service.hook!r}, not {hook_request.hook!r}"
        )
    try:
        context = validate_context(hook_request.hook, hook_request.context)
    except ValidationError as error:
        raise ProtocolError(400, validation_issues(error, prefix="context")) from None

    prefetch = await _resolve(runtime, service, hook_request)
    call = HookCall(
        service=service, request=hook_request, context=context, prefetch=prefetch, client=client
    )
    response = await service.handler(call)
    return JsonResponse(response.to_wire())


@router.post(
    "/cds-services/{service_id}/feedback",
    summary="Report what clinicians did with cards",
    description="Each entry is validated on its own: valid ones are stored, invalid ones are "
    "reported as `feedback[i]…` issues. A re-sent entry is recognised as a duplicate.",
    openapi_extra=json_request_body(feedback_schema(), FEEDBACK_EXAMPLE),
)
async def feedback(
    service_id: str, request: Request, runtime: Runtime, client: Client
) -> JsonResponse:
    _service_or_404(runtime, service_id)
    body = await json_body(request)
    raw_entries = body.get("feedback")
    if not isinstance(raw_entries, list):
        raise ProtocolError.single(400, "the body must hold a 'feedback' list")

    valid: list[FeedbackEntry] = []
    rejected: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_entries):
        try:
            valid.append(FeedbackEntry.model_validate(raw))
        except ValidationError as error:
            rejected.extend(validation_issues(error, prefix=f"feedback[{index}]"))
    if rejected and not valid:
        raise ProtocolError(400, rejected)

    receipt = await runtime.feedback_store.store(service_id, valid, client)
    summary = (
        f"stored {receipt.stored} of {len(raw_entries)} feedback entries"
        f" ({receipt.duplicates} already on record, {len(raw_entries) - len(valid)} rejected)"
    )
    notes = [issue(summary, code="informational", severity="information")]
    if receipt.orphans:
        notes.append(
            issue(
                f"{receipt.orphans} stored entries refer to cards with no prediction on record",
                code="not-found",
                severity="warning",
            )
        )
    return JsonResponse(operation_outcome([*notes, *rejected]))


def _service_or_404(runtime: CdsRuntime, service_id: str) -> CdsService:
    service = runtime.registry.get(service_id)
    if service is None:
        raise ProtocolError.single(404, f"no CDS service {service_id!r}", code="not-found")
    return service


async def json_body(request: Request) -> dict[str, Any]:
    media_type = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise ProtocolError.single(
            400, f"content type must be application/json, not {media_type!r}"
        )
    raw = await request.body()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise ProtocolError.single(
            400, "the body is not valid JSON (UTF-8)", code="structure"
        ) from None
    if not isinstance(body, dict):
        raise ProtocolError.single(400, "the body must be a JSON object", code="structure")
    try:
        # orjson writes at most 254 levels of nesting: a body it cannot write back (deeper than
        # that, though it parsed) would fail later, where it is stored or validated, as a 500.
        orjson.dumps(body)
    except orjson.JSONEncodeError:
        raise ProtocolError.single(
            400, "the body is nested too deeply (at most 254 levels)", code="structure"
        ) from None
    return body


async def _resolve(
    runtime: CdsRuntime, service: CdsService, hook_request: HookRequest
) -> dict[str, dict[str, Any] | None]:
    plan = PrefetchPlan(templates=service.prefetch, required=service.required_keys)
    fhir = None
    if hook_request.fhir_server is not None:
        authorization = hook_request.fhir_authorization
        fhir = FhirClient(
            runtime.http,
            str(hook_request.fhir_server),
            access_token=authorization.access_token.get_secret_value() if authorization else None,
            deadline=asyncio.get_running_loop().time() + runtime.fhir_budget_seconds,
            max_pages=runtime.fhir_max_pages,
        )
    try:
        return await resolve_prefetch(plan, hook_request.prefetch, hook_request.context, fhir)
    except PrefetchUnavailable as error:
        log.warning("required prefetch unavailable", extra={"prefetch_key": error.key})
        raise ProtocolError(
            412, [issue(str(error), code="not-found", expression=f"prefetch.{error.key}")]
        ) from None


def unauthorized_response() -> Response:
    """The bare 401: no body, no reason."""
    return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
