"""The app factory: ``create_app(settings)`` builds a fully wired, independent app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.engine import Engine
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from app.access.log import AccessLog
from app.audit.feedback import SqlFeedbackStore
from app.audit.models import register_packages
from app.audit.predictions import PredictionAudit
from app.audit.pseudonym import pseudonymizer_for
from app.audit.router import router as audit_router
from app.dashboard.router import router as dashboard_router
from app.health import router as health_router
from app.logs import quiet_http_loggers
from app.metrics import Metrics
from app.middleware import BodyLimitMiddleware, BodyTooLarge, ObservabilityMiddleware
from app.models.package import ModelPackage, load_packages
from app.models.service import registry_for, validation_memo
from app.outcomes.router import router as outcomes_router
from app.outcomes.store import OutcomeStore
from app.ratelimit import RateLimitedAuthenticator, RateLimiter, RateLimitMiddleware
from app.reports.agreement_router import router as agreement_router
from app.reports.drift_router import router as drift_router
from app.reports.router import router as reports_router
from app.settings import Settings
from app.store.database import StoreUnavailable, call_bound, create_tables, make_engine
from app.store.replay import SqlReplayGuard, replay_engine
from app.web.pages import router as pages_router
from cds_hooks.auth.clients import TrustedClient, load_trusted_clients
from cds_hooks.auth.jwks import JwksCache
from cds_hooks.auth.verifier import Authenticator, InsecureDevAuthenticator, JwtAuthenticator
from cds_hooks.errors import ProtocolError, issue, operation_outcome
from cds_hooks.registry import ServiceRegistry
from cds_hooks.responses import FhirJsonResponse, JsonResponse
from cds_hooks.router import AuthenticationFailed, CdsRuntime, unauthorized_response
from cds_hooks.router import router as cds_router

log = logging.getLogger(__name__)
BUNDLED_MODELS = Path(__file__).resolve().parent / "models" / "bundled"

INSECURE_WARNING = (
    "BEDSIDE_INSECURE_DEV_AUTH is ON: every request is accepted without a signed JWT. "
    "Use this for local trials only, never with real patients."
)


def create_app(
    settings: Settings | None = None,
    registry: ServiceRegistry | None = None,
    packages: list[ModelPackage] | None = None,
) -> FastAPI:
    """Build the service.

    The CDS services are ``registry`` when given (tests), else those of ``packages``, else those
    of the packages in ``BEDSIDE_MODEL_DIR`` (the bundled demo package by default).
    """
    settings = settings or Settings()
    quiet_http_loggers()
    engine = make_engine(settings.database_url)
    key = settings.audit_hmac_key.get_secret_value() if settings.audit_hmac_key else None
    pseudonyms = pseudonymizer_for(settings.database_url, key)
    timeout = settings.audit_write_timeout_seconds
    metrics = Metrics.create()
    audit = PredictionAudit(engine, pseudonyms, timeout, metrics.audit_failures)
    if registry is None:
        packages = packages if packages is not None else load_model_packages(settings)
        memo = validation_memo(settings.validation_memo_entries)
        if memo is not None:
            metrics.watch_validation_memo(memo)
        registry = registry_for(packages, settings.public_base, audit, memo)
    clients = _trusted_clients(settings)
    limiter = _rate_limiter(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.insecure_dev_auth:
            log.warning(INSECURE_WARNING)
        create_tables(engine)
        register_packages(engine, app.state.packages)
        replay = engine if settings.insecure_dev_auth else replay_engine(engine)
        app.state.replay_engine = replay
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        async with httpx.AsyncClient(limits=limits, follow_redirects=False) as http:
            app.state.cds = CdsRuntime(
                registry=registry,
                authenticator=_rate_limited(
                    _authenticator(settings, clients, http, replay), limiter
                ),
                feedback_store=SqlFeedbackStore(engine, timeout),
                http=http,
                public_base=settings.public_base,
                fhir_budget_seconds=settings.fhir_budget_seconds,
                fhir_max_pages=settings.fhir_max_pages,
            )
            yield
        if replay is not engine:
            replay.dispose()
        engine.dispose()

    app = FastAPI(
        title="Bedside",
        summary="CDS Hooks risk cards with SHAP explanations, audited for safety officers.",
        version="0.1.0",
        lifespan=lifespan,
        default_response_class=JsonResponse,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.metrics = metrics
    app.state.packages = packages or []
    app.state.audit = audit
    app.state.outcomes = OutcomeStore(engine, pseudonyms, timeout)
    app.state.access_log = AccessLog(engine, timeout)
    app.include_router(cds_router)
    app.include_router(outcomes_router)
    app.include_router(audit_router)
    app.include_router(reports_router)
    app.include_router(agreement_router)
    app.include_router(drift_router)
    app.include_router(health_router)
    app.include_router(pages_router)
    app.include_router(dashboard_router)
    _install_error_handlers(app)

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, reject=_too_large_asgi
    )
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=metrics,
        is_known_service=lambda sid: registry.get(sid) is not None,
    )
    return app


def load_model_packages(settings: Settings) -> list[ModelPackage]:
    """The configured model packages (the bundled demo by default).

    A package that fails its integrity check stops the start: a tampered model is never served.
    """
    model_dir = settings.model_dir or BUNDLED_MODELS
    if not model_dir.exists():
        if settings.model_dir is not None:
            raise FileNotFoundError(f"BEDSIDE_MODEL_DIR {model_dir} does not exist")
        log.warning("no bundled model package found; no CDS services are offered")
        return []
    packages = load_packages(model_dir)
    for package in packages:
        log.info(
            "model package loaded",
            extra={"model": package.name, "version": package.version, "hash": package.package_hash},
        )
    return packages


def _trusted_clients(settings: Settings) -> dict[str, TrustedClient]:
    if settings.clients_file is None:
        if not settings.insecure_dev_auth:
            log.warning("BEDSIDE_CLIENTS_FILE is not set: every CDS call will be refused (401)")
        return {}
    return load_trusted_clients(settings.clients_file)


def _authenticator(
    settings: Settings,
    clients: dict[str, TrustedClient],
    http: httpx.AsyncClient,
    replay: Engine,
) -> Authenticator:
    if settings.insecure_dev_auth:
        return InsecureDevAuthenticator()
    jwks = JwksCache(
        http, ttl=settings.jwks_cache_seconds, min_refresh=settings.jwks_min_refresh_seconds
    )
    return JwtAuthenticator(
        clients,
        jwks,
        SqlReplayGuard(replay, bound_seconds=call_bound(settings.audit_write_timeout_seconds)),
        leeway=settings.jwt_leeway_seconds,
        max_lifetime=settings.jwt_max_lifetime_seconds,
    )


def _rate_limiter(settings: Settings) -> RateLimiter | None:
    if settings.rate_limit_per_minute == 0:
        return None
    return RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)


def _rate_limited(authenticator: Authenticator, limiter: RateLimiter | None) -> Authenticator:
    return authenticator if limiter is None else RateLimitedAuthenticator(authenticator, limiter)


def _outcome_response(
    status_code: int, issues: list[dict[str, object]], headers: dict[str, str] | None = None
) -> FhirJsonResponse:
    return FhirJsonResponse(operation_outcome(issues), status_code=status_code, headers=headers)


async def _too_large_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    response = _outcome_response(413, [issue("request body too large", code="too-long")])
    await response(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProtocolError)
    async def protocol_error(_request: Request, error: ProtocolError) -> Response:
        return _outcome_response(error.status_code, error.issues)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(_request: Request, error: StoreUnavailable) -> Response:
        log.error("store unavailable", extra={"error": str(error)})
        issues = [issue("the store is unavailable; retry later", code="transient")]
        return _outcome_response(503, issues, headers={"Retry-After": "5"})

    @app.exception_handler(AuthenticationFailed)
    async def authentication_failed(_request: Request, _error: AuthenticationFailed) -> Response:
        return unauthorized_response()

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(_request: Request, _error: BodyTooLarge) -> Response:
        return _outcome_response(413, [issue("request body too large", code="too-long")])

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> Response:
        issues = [
            issue(str(detail.get("msg", "invalid")), expression=".".join(map(str, detail["loc"])))
            for detail in error.errors()
        ]
        return _outcome_response(400, issues)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        """Errors Starlette and FastAPI raise themselves (a form that cannot be parsed: 400) as
        OperationOutcomes; a redirect stays a redirect."""
        if error.status_code < 400:
            return await http_exception_handler(request, error)
        issues = [
            issue(str(error.detail), code="invalid" if error.status_code < 500 else "exception")
        ]
        return _outcome_response(error.status_code, issues, headers=error.headers)

    @app.exception_handler(404)
    async def not_found(_request: Request, _error: Exception) -> Response:
        return _outcome_response(404, [issue("no such endpoint", code="not-found")])

    @app.exception_handler(405)
    async def method_not_allowed(_request: Request, error: Exception) -> Response:
        headers = getattr(error, "headers", None)
        issues = [issue("method not allowed", code="not-supported")]
        return _outcome_response(405, issues, headers=headers)
