"""Outages a test can cause for real: a TCP relay that can be cut, a database taken away."""

from __future__ import annotations

import contextlib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from tests.support.servers import free_port


def close_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class TcpRelay:
    """A loopback relay to a TCP server that a test can cut (refusing and dropping) and restore,
    or freeze (connections stay open, nothing is answered: a partition or a stopped VM)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.frozen = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.1)
        self._listener = listener
        self._acceptor = spawn(self._accept, listener)

    def stop(self) -> None:
        """Stop accepting first, then cut every relayed connection."""
        listener, self._listener = self._listener, None
        if listener is not None and self._acceptor is not None:
            close_socket(listener)
            self._acceptor.join(timeout=2)
        for sock in self._sockets:
            close_socket(sock)
        for pump in self._pumps:
            pump.join(timeout=2)
        self._sockets, self._pumps = [], []

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                close_socket(client)
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            self._sockets += [client, upstream]
            self._pumps += [
                spawn(self._pump, client, upstream),
                spawn(self._pump, upstream, client),
            ]

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                while self.frozen.is_set() and self._listener is not None:
                    time.sleep(0.05)  # hold the bytes while frozen (until thawed or stopped)
                if self._listener is None:
                    return
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)


def spawn(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


class DatabaseOutage:
    """Makes the test database really unreachable, then brings it back.

    SQLite: the folder holding the file disappears. PostgreSQL: the TCP path to the server is cut.
    """

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        url = make_url(database_url)
        self.relay: TcpRelay | None = None
        if url.get_backend_name() == "sqlite":
            self.folder = tmp_path / "store"
            self.url = f"sqlite:///{self.folder / 'bedside.db'}"
        else:
            self.relay = TcpRelay(url.host or "127.0.0.1", url.port or 5432)
            self.url = url.set(host="127.0.0.1", port=self.relay.port).render_as_string(False)

    def __enter__(self) -> DatabaseOutage:
        if self.relay:
            self.relay.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.relay:
            self.relay.stop()

    def cut(self) -> None:
        if self.relay:
            self.relay.stop()
        else:
            self.folder.rename(self.folder.with_name("store-gone"))

    def restore(self) -> None:
        if self.relay:
            self.relay.start()
        else:
            self.folder.with_name("store-gone").rename(self.folder)


class AuditStoreOutage:
    """The audit store stops taking writes, for real, then takes them again.

    SQLite: other connections hold the write locks of the store's file and of its JWT replay
    memory's (a stuck writer, a full disk). PostgreSQL: the TCP path to the server is cut
    (``DatabaseOutage``).
    """

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.sqlite_file = None
        url = make_url(database_url)
        if url.get_backend_name() == "sqlite":
            self.sqlite_file = url.database
            self.url = database_url
            self._database: DatabaseOutage | None = None
        else:
            self._database = DatabaseOutage(database_url, tmp_path)
            self.url = self._database.url
        self._holders: list[sqlite3.Connection] = []
        self._cut = False

    def __enter__(self) -> AuditStoreOutage:
        if self._database:
            self._database.__enter__()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.restore()
        if self._database:
            self._database.__exit__()

    def cut(self) -> None:
        self._cut = True
        if self._database:
            self._database.cut()
            return
        for path in (str(self.sqlite_file), f"{self.sqlite_file}.jwt-replay"):
            holder = sqlite3.connect(path, isolation_level=None)
            holder.execute("BEGIN IMMEDIATE")
            self._holders.append(holder)

    def restore(self) -> None:
        if not self._cut:
            return
        self._cut = False
        for holder in self._holders:
            holder.execute("ROLLBACK")
            holder.close()
        self._holders.clear()
        if self._database:
            self._database.restore()
