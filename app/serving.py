"""Several workers on one port, with the kernel spreading connections evenly between them.

Uvicorn's workers share one listening socket, and the first worker to wake accepts every
connection waiting: an EHR's handful of kept-alive connections, opened together, often all land
on one worker while the others idle (measured: 8 connections, 1.0 cores on one worker, 0.0 on
the other). Here each worker listens on a socket of its own, bound to the same address with
``SO_REUSEPORT``, and the kernel assigns every new connection to one of them by a hash of its
addresses. The supervisor keeps only a bound socket that never listens (it holds the port and
fails early when the port is taken), as uvicorn's does.

A worker that stops (a restart, a crash) resets the connections still waiting in its own queue;
the EHR's retry lands on another worker. Workers end with their supervisor, even one killed
outright: otherwise they would go on accepting beside a restarted service on the same port.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import socket
from typing import Any

from uvicorn import Config
from uvicorn.supervisors import Multiprocess

log = logging.getLogger("uvicorn.error")
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class WorkerSocket(socket.socket):
    """Bound to the address with ``SO_REUSEPORT``; sent to a spawned worker, it arrives as a new
    socket of that worker's own, bound the same way (uvicorn's worker then listens on it)."""

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (bind_worker_socket, (self.family, self.getsockname()))


def bind_worker_socket(family: int, address: tuple[Any, ...]) -> WorkerSocket:
    sock = WorkerSocket(family=family, type=socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve_workers(config: Config) -> None:
    """Run ``config.workers`` workers under uvicorn's supervisor, each on its own socket."""
    family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
    held = bind_worker_socket(family, (config.host, config.port))
    host, port = held.getsockname()[:2]
    log.info("Uvicorn running on http://%s:%d with %d workers", host, port, config.workers)
    try:
        Multiprocess(config, sockets=[held]).run()
    finally:
        held.close()


def end_with_supervisor() -> None:
    """In a worker spawned by the supervisor: be sent SIGTERM (uvicorn's graceful stop) when the
    supervisor dies, however it dies. Elsewhere (a single-process server): nothing."""
    supervisor = multiprocessing.parent_process()
    if supervisor is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        log.warning("this platform cannot end workers with their supervisor")
        return
    if os.getppid() != supervisor.pid:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
