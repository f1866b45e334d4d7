"""Reading multipart bodies strictly, and in one pass over bytes already in memory.

Strict: text fields must be UTF-8 (Starlette silently falls back to Latin-1), the body must end
with its closing boundary (a truncated upload is a 400, not a request missing fields), and too
many files is the same ``too_many_images`` error at any count. In one pass: the body is capped
by ``BodyLimitMiddleware`` before it gets here, so it is read whole and cut at its boundaries;
Starlette's streaming parser spent about a millisecond on a 27-part classify request (a
callback per part and per header), a third of the API's time for a zero-shot request.
"""

from __future__ import annotations

import io
from functools import lru_cache

from fastapi import Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, Headers, UploadFile

from contract.errors import MalformedRequestError, TooManyImagesError

MAX_TEXT_PART_BYTES = 1024 * 1024


class TooManyFieldsError(MalformedRequestError):
    """More text fields than the form allows; ``name`` is the field that passed the count (a
    caller may know that one field, e.g. repeated labels, has a limit of its own to name)."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message, field="body")
        self.name = name
MAX_PART_HEADER_BYTES = 16 * 1024


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
    return parse_form(await request.body(), boundary, max_files=max_files, max_fields=max_fields,
                      too_many_files=too_many_files)


def _malformed(reason: str) -> MalformedRequestError:
    return MalformedRequestError(f"malformed multipart body: {reason}", field="body")


def parse_form(body: bytes, boundary: bytes, *, max_files: int, max_fields: int,
               too_many_files: str = "") -> FormData:
    """The parts of a ``multipart/form-data`` body (RFC 7578): file parts (those with a
    filename) as in-memory UploadFiles, the others as text."""
    delimiter = b"--" + boundary
    separator = b"\r\n" + delimiter
    if body.startswith(delimiter):
        position = len(delimiter)
    else:  # a preamble before the first boundary is allowed, and ignored
        found = body.find(separator)
        if found < 0:
            raise _malformed("no part starts with the boundary of its Content-Type")
        position = found + len(separator)
    items: list[tuple[str, str | UploadFile]] = []
    files = fields = 0
    while not body.startswith(b"--", position):  # "--" after a boundary closes the body
        line_end = body.find(b"\r\n", position)
        if line_end < 0:
            break  # the body ends inside a boundary line: truncated
        if body[position:line_end].strip(b" \t"):
            raise _malformed("a boundary line has text after the boundary")
        start = line_end + 2
        end = body.find(separator, start)
        if end < 0:
            break  # the last part never ends: truncated
        name, value = _part(body[start:end])
        if isinstance(value, UploadFile):
            files += 1
            if files > max_files:
                raise TooManyImagesError(too_many_files or f"more than {max_files} files", field="images")
        else:
            fields += 1
            if fields > max_fields:
                raise TooManyFieldsError(f"malformed multipart body: more than {max_fields} fields", name)
        items.append((name, value))
        position = end + len(separator)
    else:
        return FormData(items)
    raise MalformedRequestError("multipart body is truncated: its closing boundary is missing",
                                field="body")


class InMemoryFile(io.BytesIO):
    """A file part's bytes, already in memory. ``_rolled = False`` is what tells Starlette's
    ``UploadFile.read`` so (it is a SpooledTemporaryFile's flag): without it every read of an
    image hopped to a worker thread and back, about 0.2 ms per request here."""

    _rolled = False


def _part(part: bytes) -> tuple[str, str | UploadFile]:
    if part.startswith(b"\r\n"):  # a part without headers
        raw_headers, content = b"", part[2:]
    else:
        raw_headers, found, content = part.partition(b"\r\n\r\n")
        if not found:
            raise _malformed("a part's headers do not end with a blank line")
    if len(raw_headers) > MAX_PART_HEADER_BYTES:
        raise _malformed(f"a part's headers are longer than {MAX_PART_HEADER_BYTES} bytes")
    name, filename, headers = _part_headers(raw_headers)
    if filename is not None:
        return name, UploadFile(InMemoryFile(content), size=len(content), filename=filename,
                                headers=Headers(raw=list(headers)))
    if len(content) > MAX_TEXT_PART_BYTES:
        raise _malformed(f"form field {name!r} is larger than {MAX_TEXT_PART_BYTES} bytes")
    return name, _text(content, f"form field {name!r}")


@lru_cache(maxsize=256)
def _part_headers(raw_headers: bytes) -> tuple[str, str | None, tuple[tuple[bytes, bytes], ...]]:
    """(field name, filename or None for a text field, header lines) of a part's header
    block. Parsed once per distinct block: a classify request repeats one per label, and a
    client sends the same blocks request after request (a malformed block raises each time)."""
    headers: list[tuple[bytes, bytes]] = []
    for line in raw_headers.split(b"\r\n") if raw_headers else []:
        key, colon, value = line.partition(b":")
        if not colon or not key.strip():
            raise _malformed(f"a part has a header line without a name: {line[:40]!r}")
        headers.append((key.strip().lower(), value.strip()))
    disposition = next((value for key, value in headers if key == b"content-disposition"), None)
    if disposition is None:
        raise _malformed('a part has no "Content-Disposition" header')
    kind, options = parse_options_header(disposition)
    if kind != b"form-data" or b"name" not in options:
        raise _malformed('a part\'s Content-Disposition is not form-data with a "name"')
    filename = _text(options[b"filename"], "a filename") if b"filename" in options else None
    return _text(options[b"name"], "a field name"), filename, tuple(headers)


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"{what} is not valid UTF-8") from exc
