"""The load benches' HTTP client: HTTP/1.1 over one keep-alive connection, a request at a time,
written straight on asyncio streams.

Why not httpx: on these 2 cores httpx spent 1-1.5 ms of the client's time per request
(measured against the same server, alternating with this client), which the benches counted as
the server's overhead at one client and took from the servers' CPU at 32 clients. This client
sends each request in one write and reads the answer by its Content-Length (or chunks), no more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit


class LeanHTTPError(Exception):
    """The connection failed or the server's answer was not HTTP/1.1 as expected."""


@dataclass(frozen=True)
class LeanResponse:
    status_code: int
    headers: dict[str, str]
    """Header names in lower case (a repeated header keeps its last value)."""
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class LeanClient:
    """``async with LeanClient(url) as client: await client.post(path, body, headers)``."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None,
                 timeout_s: float = 120) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http:// URLs are supported, not {base_url!r}")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout_s = timeout_s
        fixed = {"host": parts.netloc, **{k.lower(): v for k, v in (headers or {}).items()}}
        self._fixed_headers = "".join(f"{name}: {value}\r\n" for name, value in fixed.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None

    async def post(self, path: str, content: bytes, headers: dict[str, str] | None = None) -> LeanResponse:
        return await self.request("POST", path, content, headers)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> LeanResponse:
        return await self.request("GET", path, b"", headers)

    async def request(self, method: str, path: str, content: bytes = b"",
                      headers: dict[str, str] | None = None) -> LeanResponse:
        extra = "".join(f"{name.lower()}: {value}\r\n" for name, value in (headers or {}).items())
        length = f"content-length: {len(content)}\r\n" if content or method == "POST" else ""
        head = f"{method} {path} HTTP/1.1\r\n{self._fixed_headers}{extra}{length}\r\n".encode("latin-1")
        try:
            return await asyncio.wait_for(self._exchange(head + content), self.timeout_s)
        except (OSError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            await self.close()  # the next request opens a new connection
            raise LeanHTTPError(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self.close()  # a timeout or a cancellation leaves the connection mid-answer
            raise

    async def _exchange(self, request: bytes) -> LeanResponse:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        assert self._reader is not None
        self._writer.write(request)  # one write: head and body in one segment where they fit
        head = await self._reader.readuntil(b"\r\n\r\n")
        status, headers = _parse_head(head)
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = await _read_chunked(self._reader)
        elif "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        else:
            body = await self._reader.read()  # delimited by the connection's end
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return LeanResponse(status, headers, body)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise LeanHTTPError(f"not an HTTP/1.x status line: {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return int(rest.split(" ", 1)[0]), headers


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, if any
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)  # the chunk's CRLF
