"""Real uvicorn servers on loopback, started and stopped within bounded time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A port that was free a moment ago (for apps that must know their URL before starting)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serve_on_loopback(
    app: ASGIApp,
    port: int = 0,
    startup_timeout: float = 10.0,
    shutdown_grace: float | None = None,
) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 (a free port by default); yields its base URL.

    ``shutdown_grace`` bounds how long stopping waits for answers still in progress (a server
    told to be slow would otherwise hold every test's teardown for its whole delay).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=shutdown_grace,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=startup_timeout)
