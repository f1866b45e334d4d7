"""Response headers that keep a browser from misreading what the API sends.

Every response: ``X-Content-Type-Options: nosniff`` (a JSON error echoing a label is never
sniffed into HTML). The playground page (``/``) also gets a Content-Security-Policy that allows
only its own scripts, styles and API (no inline script, no other origin), and may not be framed.
"""

from __future__ import annotations

from typing import Any

NOSNIFF = (b"x-content-type-options", b"nosniff")
PAGE_POLICY = (
    b"content-security-policy",
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    b"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
)
PAGE_HEADERS = (PAGE_POLICY, (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"))
PAGES = frozenset({"/"})


class SecurityHeadersMiddleware:
    """Pure ASGI (a ``BaseHTTPMiddleware`` would cost a task per request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = (NOSNIFF, *PAGE_HEADERS) if scope.get("path") in PAGES else (NOSNIFF,)

        async def with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
