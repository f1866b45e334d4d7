"""Every limit answers with its status and a JSON error naming the field. The API first runs with
no worker (every client error is still reported as such; a valid job is refused as no worker can
run it), then with one real worker that is paused (SIGSTOP) while its long heartbeat keeps it
live, so submitted jobs stay queued and the queue limits can be reached."""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from tests.integration.conftest import LABELS, Service, encode, make_service, png_bytes

MAX_IMAGE_BYTES = 200_000
MAX_REQUEST_BYTES = 1_000_000


@pytest.fixture(scope="module")
def api(redis_server, tmp_path_factory) -> Iterator[Service]:
    svc = make_service(
        redis_server.url, tmp_path_factory.mktemp("limits"),
        TTA_MAX_REQUEST_BYTES=str(MAX_REQUEST_BYTES), TTA_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES),
        TTA_MAX_IMAGE_PIXELS="1000000", TTA_MAX_IMAGES_PER_REQUEST="3", TTA_MAX_LABELS="50",
        TTA_MAX_QUEUE_DEPTH="3", TTA_MAX_INFLIGHT_PER_KEY="2",
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
    ({"colour": "red"}, (422, "invalid_input", "colour")),
    ({"label_set": "nope", "labels": []}, (404, "not_found", "label_set")),
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


def test_inflight_per_key_then_queue_depth(api, paused_worker):
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
    assert "tta_queue_depth 3.0" in metrics
    assert 'route="/v1/jobs",status="429"' in metrics and 'route="/v1/jobs",status="503"' in metrics


def test_openapi_declares_bodies_and_errors(api):
    with api.client() as client:
        spec = client.get("/openapi.json").json()
    classify = spec["paths"]["/v1/classify"]["post"]
    assert set(classify["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert {"200", "202", "401", "413", "415", "422", "429", "503"} <= set(classify["responses"])
    assert "ErrorBody" in spec["components"]["schemas"]
