"""Hostile and real-world inputs at intake: bombs in every place a PNG can hide one, JPEGs whose
header promises far more pixels than are worth decoding, phone photos (MPO, EXIF rotation),
templates that would make str.format misbehave, and deeply nested JSON."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image, PngImagePlugin

from contract.errors import ImageTooLargeError, InvalidImageError, MalformedRequestError
from contract.images import STORED_SHORT_SIDE, decode_image, normalize_image
from contract.templates import validate_templates
from service.api.json_body import MAX_JSON_DEPTH, json_depth, parse_json


def _png(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **params)
    return buffer.getvalue()


def _jpeg(image: Image.Image, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **params)
    return buffer.getvalue()


def _two_halves() -> Image.Image:
    """Left half red, right half blue: orientation is visible in the pixels."""
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    return image


@pytest.mark.parametrize("chunk", ["zTXt", "iTXt"])
def test_text_chunk_bomb_is_too_large_not_corrupt(chunk):
    info = PngImagePlugin.PngInfo()
    if chunk == "zTXt":  # inflates past Pillow's per-chunk limit
        info.add_text("comment", "a" * 5_000_000, zip=True)
    else:
        info.add_itxt("comment", "a" * 5_000_000, zip=True)
    data = _png(Image.new("RGB", (8, 8)), pnginfo=info)
    assert len(data) < 50_000
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        normalize_image(data)


def test_icc_profile_bomb_is_too_large_not_corrupt():
    data = _png(Image.new("RGB", (8, 8)), icc_profile=b"\0" * 5_000_000)
    assert len(data) < 50_000
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        normalize_image(data)


def test_large_jpeg_is_decoded_at_reduced_scale_and_stored_small():
    data = _jpeg(Image.new("RGB", (6000, 6000), (10, 20, 30)), quality=50)
    kept = normalize_image(data)
    assert kept.decoded_pixels <= (6000 // 8) ** 2  # the DCT draft, not 36 megapixels
    assert min(kept.image.size) == STORED_SHORT_SIDE
    assert decode_image(kept.data).size == kept.image.size  # what is stored is what was checked


def test_truncated_header_lie_is_refused_as_corrupt():
    data = _jpeg(Image.new("RGB", (6000, 6000), (10, 20, 30)), quality=50)[:2000]
    with pytest.raises(InvalidImageError, match="corrupt or truncated"):
        normalize_image(data)


def test_small_images_are_stored_as_sent():
    data = _png(_two_halves())
    assert normalize_image(data).data == data


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    data = _jpeg(_two_halves(), exif=exif, quality=95)
    kept = normalize_image(data)
    assert kept.image.size == (20, 40)
    top, bottom = kept.image.getpixel((10, 2)), kept.image.getpixel((10, 37))
    assert top[0] > 200 and top[2] < 60  # the red half is on top once upright
    assert bottom[2] > 200 and bottom[0] < 60
    assert decode_image(kept.data).size == (20, 40)


def test_mpo_is_read_as_its_first_frame():
    buffer = io.BytesIO()
    first, second = _two_halves(), Image.new("RGB", (40, 20), (0, 255, 0))
    first.save(buffer, format="MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(buffer.getvalue())).format == "MPO"
    kept = normalize_image(buffer.getvalue())
    assert kept.image.size == (40, 20)
    assert kept.image.getpixel((5, 10))[0] > 200  # red: the first frame
    assert decode_image(kept.data).getpixel((5, 10))[0] > 200


@pytest.mark.parametrize("template", ["{} {x}", "{0}", "{.__class__}", "{:>999999}", "{}{}", "a {{}} {}",
                                      "x\u200b{}", "{" + "}" * 3])
def test_templates_with_anything_but_one_plain_placeholder_are_refused(template):
    with pytest.raises(ValueError, match="template #1"):
        validate_templates([template])


def test_plain_templates_pass():
    assert validate_templates(["a photo of a {}.", "{} (drawing)"]) == ("a photo of a {}.", "{} (drawing)")


def test_json_depth_is_bounded_without_recursion():
    assert json_depth({"a": [1, {"b": []}]}) == 4 and json_depth(7) == 0
    deep = "[" * 10_000 + "]" * 10_000
    with pytest.raises(MalformedRequestError, match="nested too deeply"):
        parse_json(deep, "body")
    just_over = json.dumps(json.loads("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)))
    with pytest.raises(MalformedRequestError, match="nested too deeply"):
        parse_json(just_over, "body")
    assert parse_json(b'{"options": {"steps": 2}}', "body") == {"options": {"steps": 2}}


@pytest.mark.parametrize("text", ['{"lr": NaN}', '{"lr": Infinity}', '[-Infinity]'])
def test_non_finite_numbers_are_not_json(text):
    with pytest.raises(MalformedRequestError, match="which JSON does not allow"):
        parse_json(text, "options")
