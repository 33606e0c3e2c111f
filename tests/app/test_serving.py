"""Several workers on one port: each listens on its own socket and the kernel spreads the
connections (``app.serving``)."""

from __future__ import annotations

import os
import signal
import socket
import time
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

from app.demo.threaded_server import free_port
from app.serving import WorkerSocket, bind_worker_socket
from tests.support.bedside_process import BedsideServer

CONNECTIONS = 24


def test_a_worker_socket_sent_to_a_worker_arrives_as_its_own_socket_on_the_same_port() -> None:
    held = bind_worker_socket(socket.AF_INET, ("127.0.0.1", 0))
    received = ForkingPickler.loads(ForkingPickler.dumps(held))
    try:
        assert isinstance(received, WorkerSocket)
        assert received.fileno() != held.fileno()
        assert received.getsockname() == held.getsockname()
        assert received.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        received.listen()
        another = ForkingPickler.loads(ForkingPickler.dumps(held))
        another.listen()  # two workers listening on one port at once
        another.close()
    finally:
        received.close()
        held.close()


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _accepted_by(pid: int, port: int) -> int:
    """How many established connections to ``port`` the process ``pid`` holds."""
    inodes = _socket_inodes(pid)
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01" and fields[9] in inodes:  # ESTABLISHED
            count += 1
    return count


def _workers(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    workers = []
    for child in children:
        command = Path(f"/proc/{child}/cmdline").read_bytes()
        if b"multiprocessing" in command and b"resource_tracker" not in command:
            workers.append(int(child))
    return workers


def test_two_workers_share_the_connections_opened_together(tmp_path: Path) -> None:
    """Opened at once, as an EHR's connection pool does, the connections land on both workers
    (with one shared socket they often all went to the first worker to wake)."""
    port = free_port()
    environment = {
        "BEDSIDE_DATABASE_URL": f"sqlite:///{tmp_path / 'bedside.db'}",
        "BEDSIDE_INSECURE_DEV_AUTH": "true",
    }
    server = BedsideServer(port, environment, tmp_path / "serve.log", ["--workers", "2"])
    connections: list[socket.socket] = []
    try:
        server.start()
        assert server.process is not None
        workers = _workers(server.process.pid)
        assert len(workers) == 2, server.output()
        _wait_until_listening(workers, port)
        for _ in range(CONNECTIONS):
            connections.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        for connection in connections:  # each connection answered, so each was accepted
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: bedside\r\n\r\n")
        for connection in connections:
            assert connection.recv(4096).startswith(b"HTTP/1.1 200")
        counts = sorted(_accepted_by(worker, port) for worker in workers)
    finally:
        for connection in connections:
            connection.close()
        server.stop()
    assert sum(counts) == CONNECTIONS
    # A fair hash puts fewer than 4 of 24 on one worker with probability 0.03%.
    assert counts[0] >= 4, counts


def _wait_until_listening(workers: list[int], port: int, seconds: float = 60.0) -> None:
    """``/readyz`` answers once one worker is up; the other may still be importing."""
    deadline = time.monotonic() + seconds
    while not all(_listening(worker, port) for worker in workers):
        assert time.monotonic() < deadline, "a worker never listened"
        time.sleep(0.1)


def _listening(pid: int, port: int) -> bool:
    inodes = _socket_inodes(pid)
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A" and fields[9] in inodes:
            return True
    return False


def test_workers_end_with_a_supervisor_killed_outright(tmp_path: Path) -> None:
    """Each worker listens on a socket of its own: orphans would go on accepting beside a
    restarted service on the same port, so a worker ends with its supervisor."""
    environment = {
        "BEDSIDE_DATABASE_URL": f"sqlite:///{tmp_path / 'bedside.db'}",
        "BEDSIDE_INSECURE_DEV_AUTH": "true",
    }
    server = BedsideServer(free_port(), environment, tmp_path / "serve.log", ["--workers", "2"])
    workers: list[int] = []
    try:
        server.start()
        assert server.process is not None
        workers = _workers(server.process.pid)
        assert len(workers) == 2, server.output()
        _wait_until_listening(workers, server.port)
        server.kill()
        deadline = time.monotonic() + 20
        while any(_alive(worker) for worker in workers):
            assert time.monotonic() < deadline, f"orphaned workers: {server.output()}"
            time.sleep(0.1)
    finally:
        server.stop()
        for worker in workers:
            if _alive(worker):
                os.kill(worker, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its (gone) parent to be reaped by init."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
