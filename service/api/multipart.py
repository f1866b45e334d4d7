"""Reading multipart bodies strictly: text fields must be UTF-8 (Starlette silently falls back
to Latin-1), the body must end with its closing boundary (a truncated upload is a 400, not a
request missing fields), and too many files is the same ``too_many_images`` error at any count."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from fastapi import Request
from starlette.datastructures import FormData
from starlette.formparsers import MultiPartException, MultiPartParser

from service.api.body_limit import BodyTooLarge
from service.errors import MalformedRequestError, TooManyImagesError

MAX_TEXT_PART_BYTES = 1024 * 1024


class _StrictParser(MultiPartParser):
    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise MultiPartException(f"form field {part.field_name!r} is not valid UTF-8") from exc
        super().on_part_end()


class _Tail:
    """Wraps the body stream, remembering its last bytes (for the closing-boundary check)."""

    def __init__(self, stream: AsyncGenerator[bytes, None]) -> None:
        self.stream = stream
        self.tail = b""

    async def __aiter__(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self.stream:
            self.tail = (self.tail + chunk)[-256:]
            yield chunk


def boundary_of(request: Request) -> bytes:
    for param in request.headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "boundary" and value:
            return value.strip('"').encode("latin-1")
    raise MalformedRequestError("multipart body without a boundary in Content-Type", field="body")


async def read_form(request: Request, *, max_files: int, max_fields: int,
                    too_many_files: str = "") -> FormData:
    """The parsed form; ``too_many_files`` is the message of the TooManyImagesError raised when
    there are more than ``max_files`` file parts."""
    boundary = boundary_of(request)
    body = _Tail(request.stream())
    parser = _StrictParser(request.headers, body.__aiter__(), max_files=max_files,
                           max_fields=max_fields, max_part_size=MAX_TEXT_PART_BYTES)
    try:
        form = await parser.parse()
    except BodyTooLarge:
        raise
    except MultiPartException as exc:
        if str(exc).startswith("Too many files"):
            raise TooManyImagesError(too_many_files or str(exc), field="images") from exc
        raise MalformedRequestError(f"malformed multipart body: {exc}", field="body") from exc
    except Exception as exc:  # python-multipart raises its own errors on broken bodies
        raise MalformedRequestError(f"malformed multipart body: {exc or type(exc).__name__}",
                                    field="body") from exc
    if not body.tail.rstrip(b"\r\n").endswith(b"--" + boundary + b"--"):
        raise MalformedRequestError("multipart body is truncated: its closing boundary is missing",
                                    field="body")
    return form
