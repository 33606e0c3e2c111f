"""Bedside itself, as ``bedside serve`` in a child process on loopback (stopped on every exit)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import httpx

SERVE = (sys.executable, "-m", "app.cli", "serve")
_MAIN = "from app.cli import main; raise SystemExit(main())"
SERVE_UNDER_C = (sys.executable, "-c", _MAIN, "serve")
"""The same ``bedside serve``, launched so that spawned uvicorn workers do not re-import the
entry module (``python -m app.cli``) before answering the supervisor's 5-second health check."""


class BedsideProcess:
    """``bedside serve`` with the demo's environment; its log goes to ``log_path``."""

    def __init__(
        self,
        port: int,
        environment: dict[str, str],
        log_path: Path,
        arguments: Sequence[str] = (),
        launcher: Sequence[str] = SERVE,
    ) -> None:
        self.arguments = list(arguments)
        self.launcher = list(launcher)
        self.base_url = f"http://127.0.0.1:{port}"
        self.port = port
        self.environment = {**os.environ, **environment, "BEDSIDE_PUBLIC_URL": self.base_url}
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, ready_timeout: float = 90.0) -> None:
        """Start it and wait, bounded, until ``/readyz`` answers 200."""
        self._log = self.log_path.open("ab")
        command = [*self.launcher, "--port", str(self.port), *self.arguments]
        self.process = subprocess.Popen(
            command, env=self.environment, stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + ready_timeout
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"bedside serve exited; see {self.log_path}")
                try:
                    if http.get(f"{self.base_url}/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"bedside serve was not ready in time; see {self.log_path}")
                time.sleep(0.2)

    def wait(self) -> int:
        """Block until the service exits (e.g. on Ctrl-C); its exit code."""
        assert self.process is not None
        return self.process.wait()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGINT (uvicorn's graceful stop), a bounded wait, then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
