"""A lean HTTP/1.1 keep-alive client for the load generator of the HTTP benchmark.

The load generator shares this machine's two cores with the server it measures: every
millisecond of CPU it spends per request is taken from the server and shows up in the figures.
httpx spends about 2 ms of CPU per POST of a 67 kB body; this client writes prepared bytes to a
kept-alive connection and reads the answer by its Content-Length (or chunks) for a fraction of
that. It is for benchmarking a trusted server on loopback only: no TLS, redirects, proxies or
cookies.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LoopbackClient:
    """POSTs to one ``http://host:port``; connections are reused, one request at a time each."""

    def __init__(self, base_url: str, timeout: float) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None or parts.port is None:
            raise ValueError(f"an http://host:port URL is needed, not {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host, self._port = parts.hostname, parts.port
        self._timeout = timeout
        self._idle: list[Connection] = []

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """Status and body; status 0 when no complete answer came within the timeout."""
        if not url.startswith(self.base_url):
            raise ValueError(f"{url!r} is not on {self.base_url}")
        path = url[len(self.base_url) :] or "/"
        head = [f"POST {path} HTTP/1.1", f"Host: {self._host}:{self._port}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self._timeout):
                while self._idle:  # a kept-alive connection the server has closed meanwhile
                    connection = self._idle.pop()  # fails before any answer: try the next
                    try:
                        return await self._exchange(connection, request)
                    except (OSError, asyncio.IncompleteReadError) as error:
                        if isinstance(error, asyncio.IncompleteReadError) and error.partial:
                            return 0, b""  # it had begun to answer: not a stale connection
                return await self._exchange(await self._connect(), request)
        except (OSError, EOFError, TimeoutError, ValueError, asyncio.IncompleteReadError):
            return 0, b""

    async def _exchange(self, connection: Connection, request: bytes) -> tuple[int, bytes]:
        reader, writer = connection
        try:
            writer.write(request)
            status, payload, keep_alive = await _read_response(reader)
        except BaseException:
            writer.close()
            raise
        if keep_alive:
            self._idle.append(connection)
        else:
            writer.close()
        return status, payload

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()

    async def _connect(self) -> Connection:
        return await asyncio.open_connection(self._host, self._port, limit=2**20)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    status = int(status_line.split(" ", 2)[1])
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name:
            fields[name.strip().lower()] = value.strip()
    if "content-length" in fields:
        payload = await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding", "").lower() == "chunked":
        payload = await _read_chunks(reader)
    else:
        raise ValueError("an answer without Content-Length or chunks")
    return status, payload, fields.get("connection", "").lower() != "close"


async def _read_chunks(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # the end of the (empty) trailer section
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
