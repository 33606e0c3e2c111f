"""An ASGI app served by uvicorn in a thread of this process, on loopback, for a bounded time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


def free_port() -> int:
    """A loopback port that was free a moment ago (for a server that must know its URL first)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    app: ASGIApp,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
    port: int = 0,
    shutdown_grace: float | None = None,
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a thread (on a free port by default); yields its base URL.

    Starting and stopping are bounded by ``timeout``; ``shutdown_grace`` bounds how long stopping
    waits for answers still in progress.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=shutdown_grace,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-thread", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout)
