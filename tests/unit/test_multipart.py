"""The API's one-pass multipart parser: the same form as Starlette's streaming parser on what
clients send, and a clear 400 (never another exception) on every truncation of it."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from starlette.datastructures import FormData, Headers, UploadFile
from starlette.formparsers import MultiPartParser

from contract.errors import MalformedRequestError, TooManyImagesError
from service.api.multipart import parse_form

FILES = [("image", ("a.png", b"\x89PNG\r\n--not-a-boundary\r\n\r\nbytes")), ("image", ("b.jpg", b""))]
DATA = {"labels": ["cat", "chien \u00e9t\u00e9", "\u732b"], "method": "zeroshot", "options": '{"steps": 2}'}


def encoded(files: list = FILES, data: dict = DATA) -> tuple[bytes, bytes, dict[str, str]]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    content_type = request.headers["Content-Type"]
    return request.read(), content_type.partition("boundary=")[2].encode(), {"content-type": content_type}


def contents(form: FormData) -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            out.append((key, (value.filename, asyncio.run(value.read()))))
        else:
            out.append((key, value))
    return out


def starlette_form(body: bytes, headers: dict[str, str]) -> FormData:
    async def stream():  # in uneven chunks, as a socket would deliver it
        for start in range(0, len(body), 7):
            yield body[start:start + 7]

    return asyncio.run(MultiPartParser(Headers(headers), stream()).parse())


def test_it_reads_what_starlette_reads():
    body, boundary, headers = encoded()
    ours = contents(parse_form(body, boundary, max_files=4, max_fields=10))
    assert ours == contents(starlette_form(body, headers))
    assert ours[-2:] == [("image", ("a.png", FILES[0][1][1])), ("image", ("b.jpg", b""))]
    assert [v for k, v in ours if k == "labels"] == DATA["labels"]


def test_a_preamble_and_an_epilogue_are_ignored():
    body, boundary, _ = encoded()
    form = parse_form(b"preamble\r\n" + body + b"epilogue", boundary, max_files=4, max_fields=10)
    assert contents(form) == contents(parse_form(body, boundary, max_files=4, max_fields=10))


def test_every_truncation_is_a_malformed_body():
    body, boundary, _ = encoded()
    whole = contents(parse_form(body, boundary, max_files=4, max_fields=10))
    closing = body.rindex(b"--" + boundary + b"--")
    for cut in range(len(body)):
        if cut >= closing + len(boundary) + 4:  # the closing boundary is all there
            assert contents(parse_form(body[:cut], boundary, max_files=4, max_fields=10)) == whole
            continue
        with pytest.raises(MalformedRequestError) as caught:
            parse_form(body[:cut], boundary, max_files=4, max_fields=10)
        assert caught.value.field == "body"


@pytest.mark.parametrize(("part", "reason"), [
    (b'Content-Disposition: form-data; name="labels"\r\n\r\nca\xfft', "not valid UTF-8"),
    (b'Content-Type: text/plain\r\n\r\ncat', "no \"Content-Disposition\""),
    (b'Content-Disposition: attachment; name="labels"\r\n\r\ncat', "not form-data"),
    (b'Content-Disposition: form-data; filename="x"\r\n\r\ncat', "not form-data"),
    (b'Content-Disposition: form-data; name="labels"\r\nno colon here\r\n\r\ncat', "without a name"),
    (b'Content-Disposition: form-data; name="labels"', "blank line"),
])
def test_broken_parts_are_named(part, reason):
    body = b"--B\r\n" + part + b"\r\n--B--\r\n"
    with pytest.raises(MalformedRequestError, match=reason):
        parse_form(body, b"B", max_files=4, max_fields=10)


def test_limits_on_files_and_fields():
    body, boundary, _ = encoded()
    with pytest.raises(TooManyImagesError, match="at most one"):
        parse_form(body, boundary, max_files=1, max_fields=10, too_many_files="at most one")
    with pytest.raises(MalformedRequestError, match="more than 4 fields"):
        parse_form(body, boundary, max_files=4, max_fields=4)
    header = b'--B\r\nContent-Disposition: form-data; name="labels"\r\n\r\n'
    huge = header + b"x" * (1024 * 1024 + 1) + b"\r\n--B--"
    with pytest.raises(MalformedRequestError, match="larger than"):
        parse_form(huge, b"B", max_files=4, max_fields=10)


def test_a_file_part_is_read_on_the_event_loop_not_in_a_thread(monkeypatch):
    """Its bytes are in memory already: a hop to a worker thread would only add latency."""
    import starlette.datastructures

    def no_thread(*args: object, **kwargs: object) -> None:
        raise AssertionError("UploadFile.read went to a thread")

    monkeypatch.setattr(starlette.datastructures, "run_in_threadpool", no_thread)
    body, boundary, _ = encoded()
    form = parse_form(body, boundary, max_files=8, max_fields=16, too_many_files="too many")
    assert [value for key, value in contents(form) if key == "image"] == [f for _, f in FILES]
