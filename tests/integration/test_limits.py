"""Every limit answers with its status and a JSON error naming the field. The API first runs with
no worker (every client error is still reported as such; a valid job is refused as no worker can
run it), then with one real worker that is paused (SIGSTOP) while its long heartbeat keeps it
live, so submitted jobs stay queued and the queue limits can be reached."""

from __future__ import annotations

import base64
import io
import json
import signal
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from PIL import Image, PngImagePlugin

from service.queue.keys import Keys
from tests.integration.conftest import LABELS, Service, encode, make_service, png_bytes

MAX_IMAGE_BYTES = 200_000
MAX_REQUEST_BYTES = 1_000_000


@pytest.fixture(scope="module")
def api(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(
        redis_server.url, tmp_path_factory.mktemp("limits"),
        TTA_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES), TTA_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES),
        TTA_MAX_IMAGE_PIXELS="1000000", TTA_MAX_IMAGES_PER_REQUEST="3", TTA_MAX_LABELS="50",
        TTA_MAX_QUEUE_DEPTH="4", TTA_MAX_INFLIGHT_PER_KEY="2",
    )
    svc.start_api()
    yield svc
    svc.stop()


def post(api: Service, tenant: str = "alice", images: list[bytes] | None = None, **data):  # type: ignore[no-untyped-def]
    files = [("image", (f"{i}.png", image)) for i, image in enumerate(images or [png_bytes()])]
    fields = {"labels": LABELS, **data}
    with api.client(tenant) as client:
        return client.post("/v1/jobs", files=files, data=fields)


def error(response) -> tuple[int, str, str | None]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) <= {"code", "message", "field"} and body["message"]
    return response.status_code, body["code"], body.get("field")


@pytest.mark.parametrize(("case", "expected"), [
    ("gif", (415, "unsupported_image_format", "images[0]")),
    ("bmp", (415, "unsupported_image_format", "images[0]")),
    ("truncated_jpeg", (422, "invalid_image", "images[0]")),
    ("not_an_image", (422, "invalid_image", "images[0]")),
    ("too_many_pixels", (413, "image_too_large", "images[0]")),
    ("png_bomb", (413, "image_too_large", "images[0]")),
    ("image_bytes", (413, "image_too_large", "images[0]")),
    ("second_image_bad", (422, "invalid_image", "images[1]")),
])
def test_image_limits(api, case, expected):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (500, 600, 3), dtype=np.uint8))
    images = {
        "gif": encode(Image.new("RGB", (40, 40)), "GIF"),
        "bmp": encode(Image.new("RGB", (40, 40)), "BMP"),
        "truncated_jpeg": encode(Image.new("RGB", (300, 300), "red"), "JPEG")[:200],
        "not_an_image": b"%PDF-1.4 definitely not an image",
        "too_many_pixels": encode(Image.new("1", (1200, 1000)), "PNG"),
        "png_bomb": encode(Image.new("1", (20_000, 20_000)), "PNG"),
        "image_bytes": encode(noise, "PNG"),  # 300k pixels (allowed) but ~900 kB (not)
    }
    batch = [png_bytes(), b"garbage"] if case == "second_image_bad" else [images[case]]
    if case == "image_bytes":
        assert len(batch[0]) > MAX_IMAGE_BYTES
    assert error(post(api, images=batch)) == expected


def test_request_body_limit_by_header_and_by_stream(api):
    big = b"x" * (MAX_REQUEST_BYTES + 10)
    with api.client() as client:
        declared = client.post("/v1/classify", content=big, headers={"Content-Type": "application/json"})
        assert error(declared) == (413, "request_too_large", "body")

        def chunks():  # type: ignore[no-untyped-def]
            for _ in range(20):
                yield b"y" * 100_000

        streamed = client.post("/v1/classify", content=chunks(), headers={"Content-Type": "application/json"})
        assert error(streamed) == (413, "request_too_large", "body")


@pytest.mark.parametrize(("data", "expected"), [
    ({"labels": [f"class {i}" for i in range(51)]}, (422, "invalid_labels", "labels")),
    ({"labels": ["cat", "x" * 101]}, (422, "invalid_labels", "labels")),
    ({"labels": ["cat"]}, (422, "invalid_labels", "labels")),
    ({"labels": ["cat", "Cat"]}, (422, "invalid_labels", "labels")),
    ({"method": "magic"}, (422, "unknown_method", "method")),
    ({"method": "tpt", "options": json.dumps({"stepz": 1})}, (422, "invalid_options", "options.stepz")),
    ({"options": "{not json"}, (422, "invalid_input", "options")),
    ({"top_k": "many"}, (422, "invalid_input", "top_k")),
    ({"top_k": "0"}, (422, "invalid_options", "top_k")),
    ({"templates": "fancy"}, (422, "invalid_options", "templates")),
    ({"templates": json.dumps(["{} {x}"])}, (422, "invalid_options", "templates")),
    ({"templates": json.dumps(["{.__class__}"])}, (422, "invalid_options", "templates")),
    ({"templates": json.dumps(["{:>999999999}"])}, (422, "invalid_options", "templates")),
    ({"labels": ["cat", "cat\u200b"]}, (422, "invalid_labels", "labels")),
    ({"labels": ["cat", "d\x7fg"]}, (422, "invalid_labels", "labels")),
    ({"options": "[" * 10_000 + "]" * 10_000}, (422, "invalid_input", "options")),
    ({"colour": "red"}, (422, "invalid_input", "colour")),
    ({"label_set": "nope", "labels": []}, (404, "not_found", "label_set")),
    *(({"method": "auto", "options": json.dumps({"tiers": tiers})}, (422, "invalid_options", "options.tiers"))
      for tiers in ("mllm", "tpt:steps=0")),
])
def test_field_errors_name_the_field(api, data, expected):
    assert error(post(api, **data)) == expected


def test_too_many_images(api):
    assert error(post(api, images=[png_bytes(i) for i in range(4)])) == (422, "too_many_images", "images")


def test_json_body_errors(api):
    with api.client() as client:
        wrong_key = client.post("/v1/classify", json={"images": [], "labels": LABELS, "lables": ["x"]})
        assert error(wrong_key) == (422, "invalid_input", "lables")
        no_images = client.post("/v1/classify", json={"images": [], "labels": LABELS})
        assert error(no_images) == (422, "invalid_input", "images")
        bad_b64 = client.post("/v1/classify", json={"images": ["***"], "labels": LABELS})
        assert error(bad_b64) == (422, "invalid_input", "images[0]")
        not_json = client.post("/v1/classify", content=b"{", headers={"Content-Type": "application/json"})
        assert error(not_json) == (400, "malformed_request", "body")
        data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
        # A valid job, but no worker is live to run it: refused now, not queued to time out.
        refused = client.post("/v1/jobs", json={"images": [data_url], "labels": LABELS})
        assert error(refused) == (503, "no_capable_worker", None)
        assert "no worker is live" in refused.json()["message"] and refused.headers["Retry-After"]
        rlcf = client.post("/v1/jobs", json={"images": [data_url], "labels": LABELS, "method": "rlcf"})
        assert error(rlcf) == (503, "no_capable_worker", None)
        assert "reward model" not in rlcf.json()["message"]  # no worker at all: not what it lacks


def test_readyz_without_workers(api):
    with api.client() as client:
        response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["reason"] == "no worker heartbeat"


@pytest.fixture(scope="module")
def paused_worker(api) -> Iterator[None]:
    """A real worker that registered, then stopped taking jobs (SIGSTOP); its 60 s heartbeat
    period keeps it live for 5 minutes, so the API accepts jobs that then stay queued."""
    process = api.start_worker("paused", TTA_HEARTBEAT_S="60")
    api.wait_workers({"paused"}, timeout_s=120)
    process.send_signal(signal.SIGSTOP)
    yield
    process.send_signal(signal.SIGCONT)


def test_phone_photos_are_accepted_upright(api, paused_worker, redis_server):
    """An MPO from a phone camera, with an EXIF rotation: accepted, stored upright and small."""
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = Image.new("RGB", (1000, 750), (200, 30, 30))
    buffer = io.BytesIO()
    photo.save(buffer, format="MPO", save_all=True, append_images=[photo], exif=exif)
    response = post(api, "bob", images=[buffer.getvalue()])
    assert response.status_code == 202, response.text
    keys = Keys(api.env["TTA_REDIS_PREFIX"])
    with redis.Redis.from_url(redis_server.url) as connection:
        stored = Image.open(io.BytesIO(connection.hget(keys.images(response.json()["job_id"]), "0")))
    assert stored.format == "PNG" and stored.size == (512, 683)  # upright (portrait), bounded


def test_inflight_per_key_then_queue_depth(api, paused_worker):
    """After the test above queued one job for bob (depth 1 of 4)."""
    with api.client() as client:
        data_url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
        assert client.post("/v1/jobs", json={"images": [data_url], "labels": LABELS}).status_code == 202
    first = post(api, "alice")
    assert first.status_code == 202
    limited = post(api, "alice")
    assert error(limited) == (429, "too_many_inflight", None)
    assert int(limited.headers["Retry-After"]) >= 1
    assert post(api, "bob").status_code == 202  # another key is not limited by alice's jobs
    full = post(api, "bob")
    assert error(full) == (503, "queue_full", None) and int(full.headers["Retry-After"]) >= 1
    with api.client() as client:
        metrics = client.get("/metrics").text
    assert "tta_queue_depth 4.0" in metrics
    assert 'route="/v1/jobs",status="429"' in metrics and 'route="/v1/jobs",status="503"' in metrics


def test_openapi_declares_bodies_and_errors(api):
    with api.client() as client:
        spec = client.get("/openapi.json").json()
    classify = spec["paths"]["/v1/classify"]["post"]
    assert set(classify["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "202", "401", "413", "415", "422", "429", "503"} <= set(classify["responses"])
    assert "ErrorBody" in spec["components"]["schemas"]


def raw_multipart(parts: list[bytes], boundary: bytes = b"b0undary", close: bool = True) -> tuple[bytes, str]:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    end = b"--" + boundary + b"--\r\n" if close else b""
    return body + end, f"multipart/form-data; boundary={boundary.decode()}"


def text_part(name: str, value: bytes) -> bytes:
    return f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value


def file_part(name: str, data: bytes) -> bytes:
    return (f'Content-Disposition: form-data; name="{name}"; filename="x.png"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data


@pytest.mark.parametrize(("parts", "close", "expected"), [
    ([file_part("image", b"PNG"), text_part("labels", b"ca\xfft,dog")], True,
     (400, "malformed_request", "body")),  # not UTF-8: refused, not read as Latin-1
    ([file_part("image", b"PNG"), text_part("labels", b"cat,dog")], False,
     (400, "malformed_request", "body")),  # truncated: no closing boundary
    ([file_part("image", b"PNG"), file_part("labels", b"cat,dog")], True,
     (422, "invalid_input", "labels")),  # a file under a text field's name
    ([file_part("image", b"PNG")] * 4 + [text_part("labels", b"cat,dog")], True,
     (422, "too_many_images", "images")),
    ([file_part("image", b"PNG")] * 5 + [text_part("labels", b"cat,dog")], True,
     (422, "too_many_images", "images")),  # one more is the same error, not a parser 400
])
def test_hostile_multipart_bodies(api, parts, close, expected):
    body, content_type = raw_multipart(parts, close=close)
    with api.client() as client:
        response = client.post("/v1/jobs", content=body, headers={"Content-Type": content_type})
    assert error(response) == expected


def test_hostile_json_bodies(api):
    with api.client() as client:
        deep = client.post("/v1/jobs", content=b"[" * 10_000 + b"]" * 10_000,
                           headers={"Content-Type": "application/json"})
        assert error(deep) == (400, "malformed_request", "body")
        surrogate = client.post("/v1/jobs", content=b'{"images": ["AAAA"], "labels": ["cat", "d\\ud800g"]}',
                                headers={"Content-Type": "application/json"})
        assert error(surrogate)[:2] in {(422, "invalid_labels"), (422, "invalid_input")}
        info = PngImagePlugin.PngInfo()
        info.add_text("comment", "a" * 5_000_000, zip=True)
        text_bomb = encode_png_with(Image.new("RGB", (8, 8)), pnginfo=info)
        assert error(post(api, images=[text_bomb])) == (413, "image_too_large", "images[0]")


def encode_png_with(image: Image.Image, **params) -> bytes:  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def test_inputs_a_hostile_tester_found_answer_as_the_rest(api):
    """Labels repeated past the form's field limit are the same 422 as too many labels at any
    count; a JSON body declared Latin-1 is read as Latin-1; ``true`` is not an integer."""
    for count in (51, 2_001, 5_000):  # TTA_MAX_LABELS is 50 here
        labels = [text_part("labels", f"l{i}".encode()) for i in range(count)]
        parts = [file_part("image", png_bytes()), *labels]
        body, content_type = raw_multipart(parts)
        with api.client() as client:
            response = client.post("/v1/jobs", content=body, headers={"Content-Type": content_type})
        assert error(response) == (422, "invalid_labels", "labels"), count
    image = base64.b64encode(png_bytes()).decode()
    latin = json.dumps({"images": [image], "labels": ["caf\u00e9", "th\u00e9", "b\u00e9b\u00e9"],
                        "top_k": 2}, ensure_ascii=False).encode("latin-1")
    with api.client() as client:
        declared = client.post("/v1/jobs", content=latin,
                               headers={"Content-Type": "application/json; charset=latin-1"})
        # valid: refused only by admission (no worker, or the queue this module filled)
        assert declared.status_code in (202, 503), declared.text
        undeclared = client.post("/v1/jobs", content=latin, headers={"Content-Type": "application/json"})
        assert error(undeclared) == (400, "malformed_request", "body")  # not UTF-8
        unknown = client.post("/v1/jobs", content=latin,
                              headers={"Content-Type": "application/json; charset=klingon"})
        assert error(unknown) == (400, "malformed_request", "Content-Type")
        for field in ("top_k", "seed"):
            boolean = client.post("/v1/jobs", json={"images": [image], "labels": LABELS, field: True})
            assert error(boolean) == (422, "invalid_input", field)


def test_every_response_says_nosniff_and_the_page_has_a_content_security_policy(api):
    with api.client() as client:
        page = client.get("/")
        policy = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "unsafe-inline" not in policy
        for response in (page, client.get("/healthz"), client.get("/v1/nope"), post(api, labels=["x"])):
            assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_api_reference_needs_no_internet(api):
    """/docs loads Swagger UI from the API itself, not from a CDN."""
    with api.client() as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "https://" not in page.text
        for asset in ("/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"):
            response = client.get(asset)
            assert response.status_code == 200 and len(response.content) > 100_000
        assert client.get("/docs/assets/nope.js").status_code == 404
