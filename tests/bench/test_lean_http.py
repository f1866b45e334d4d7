"""The load benches' lean HTTP client against a real socket server that answers as scripted:
Content-Length and chunked bodies, keep-alive, a server that closes, a bad status line."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bench.lean_http import LeanClient, LeanHTTPError

Answer = Callable[[bytes], bytes]


async def serve(answer: Answer,
                close_after_each: bool = False) -> tuple[asyncio.Server, list[bytes], list[int]]:
    """A server whose reply to each request is ``answer(request head + body)``; it records the
    requests and counts the connections."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                requests.append(request)
                writer.write(answer(request))
                await writer.drain()
                if close_after_each:
                    break
        except asyncio.IncompleteReadError:
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, requests, connections


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def url_of(server: asyncio.Server) -> str:
    return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


def test_post_sends_one_well_formed_request_and_reads_the_body_by_its_length() -> None:
    async def test() -> None:
        server, requests, connections = await serve(
            lambda _: b'HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Thing: a:b\r\n\r\n{"ok": true}')
        async with server, LeanClient(url_of(server), {"Authorization": "Bearer k"}) as client:
            first = await client.post("/v1/classify", b"body-bytes", {"Content-Type": "text/plain"})
            second = await client.post("/v1/classify", b"more")
        assert first.status_code == 200
        assert first.json() == {"ok": True}
        assert first.headers["x-thing"] == "a:b"
        assert second.content == b'{"ok": true}'
        assert len(connections) == 1  # kept alive
        head, _, body = requests[0].partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"POST /v1/classify HTTP/1.1"
        assert b"authorization: Bearer k" in lines and b"content-type: text/plain" in lines
        assert b"content-length: 10" in lines and body == b"body-bytes"

    run(test)


def test_chunked_answers_are_joined() -> None:
    async def test() -> None:
        server, _, _ = await serve(lambda _: b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
        async with server, LeanClient(url_of(server)) as client:
            response = await client.get("/x")
            again = await client.get("/x")
        assert (response.status_code, response.content) == (201, b"hello world")
        assert again.content == b"hello world"  # the chunked end was consumed exactly

    run(test)


def test_a_server_that_closes_after_each_answer_gets_a_new_connection() -> None:
    async def test() -> None:
        server, requests, connections = await serve(
            lambda _: b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            close_after_each=True)
        async with server, LeanClient(url_of(server)) as client:
            answers = [await client.get(f"/{n}") for n in range(3)]
        assert [a.content for a in answers] == [b"ok"] * 3
        assert len(connections) == 3 and len(requests) == 3

    run(test)


def test_a_reply_that_is_not_http_raises_and_the_next_request_reconnects() -> None:
    async def test() -> None:
        replies = iter([b"SSH-2.0-nope\r\n\r\n", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n"])
        server, _, connections = await serve(lambda _: next(replies))
        async with server, LeanClient(url_of(server)) as client:
            with pytest.raises(LeanHTTPError, match="not an HTTP"):
                await client.get("/")
            assert (await client.get("/")).status_code == 204
        assert len(connections) == 2

    run(test)


def test_a_refused_connection_is_a_lean_http_error() -> None:
    async def test() -> None:
        server, _, _ = await serve(lambda _: b"")
        url = url_of(server)
        server.close()
        await server.wait_closed()
        async with LeanClient(url) as client:
            with pytest.raises(LeanHTTPError):
                await client.get("/")

    run(test)


def test_only_plain_http_urls_are_accepted() -> None:
    with pytest.raises(ValueError, match="only http://"):
        LeanClient("https://example.com")
