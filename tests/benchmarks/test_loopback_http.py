"""The benchmark's lean HTTP client reads every answer right against a real uvicorn server."""

from __future__ import annotations

import asyncio

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from benchmarks.loopback_http import LoopbackClient
from tests.support.servers import serve_on_loopback


async def echo(request: Request) -> Response:
    body = await request.body()
    return JSONResponse(
        {"length": len(body), "authorization": request.headers.get("authorization")}
    )


async def chunks(_request: Request) -> Response:
    async def parts():  # type: ignore[no-untyped-def]
        for part in (b"one,", b"two,", b"three"):
            yield part

    return StreamingResponse(parts(), media_type="text/plain")


async def closing(_request: Request) -> Response:
    return Response(b"bye", headers={"Connection": "close"})


async def slow(_request: Request) -> Response:
    await asyncio.sleep(3)
    return Response(b"late")


APP = Starlette(
    routes=[
        Route("/echo", echo, methods=["POST"]),
        Route("/chunks", chunks, methods=["POST"]),
        Route("/closing", closing, methods=["POST"]),
        Route("/slow", slow, methods=["POST"]),
    ]
)


def test_posts_bodies_reuses_connections_and_reads_every_framing() -> None:
    async def run(base: str) -> None:
        client = LoopbackClient(base, timeout=5)
        body = b"x" * 200_000
        for _ in range(3):
            status, answer = await client.post(f"{base}/echo", body, {"Authorization": "t"})
            assert status == 200
            assert answer == b'{"length":200000,"authorization":"t"}'
        assert len(client._idle) == 1  # one connection, kept alive and reused
        assert await client.post(f"{base}/chunks", b"", {}) == (200, b"one,two,three")
        assert await client.post(f"{base}/closing", b"", {}) == (200, b"bye")
        assert client._idle == []  # the server said close
        status, _ = await client.post(f"{base}/missing", b"", {})
        assert status == 404
        await client.aclose()

    with serve_on_loopback(APP) as base_url:
        asyncio.run(run(base_url))


def test_a_connection_the_server_closed_is_replaced_and_a_slow_answer_times_out() -> None:
    async def run(base: str) -> None:
        client = LoopbackClient(base, timeout=1)
        assert (await client.post(f"{base}/echo", b"ab", {}))[0] == 200
        [(_, writer)] = client._idle
        writer.transport.abort()  # as if the server had dropped the idle connection
        assert (await client.post(f"{base}/echo", b"ab", {}))[0] == 200
        assert await client.post(f"{base}/slow", b"", {}) == (0, b"")
        await client.aclose()

    with serve_on_loopback(APP, shutdown_grace=0.2) as base_url:
        asyncio.run(run(base_url))
