"""Real uvicorn servers on loopback, started and stopped within bounded time."""

from __future__ import annotations

from contextlib import AbstractContextManager

from starlette.types import ASGIApp

from app.demo.threaded_server import free_port, serving

__all__ = ["free_port", "serve_on_loopback"]


def serve_on_loopback(
    app: ASGIApp,
    port: int = 0,
    startup_timeout: float = 10.0,
    shutdown_grace: float | None = None,
) -> AbstractContextManager[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port by default); yields its base URL.

    ``shutdown_grace`` bounds how long stopping waits for answers still in progress (a server
    told to be slow would otherwise hold every test's teardown for its whole delay).
    """
    return serving(app, timeout=startup_timeout, port=port, shutdown_grace=shutdown_grace)
