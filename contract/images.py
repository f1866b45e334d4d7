"""Decoding untrusted image bytes safely (torch-free: the API uses it too).

Checks happen before pixels are decoded: the header gives the format and size, so a
decompression bomb (a tiny PNG that inflates to gigapixels, or a 2 KB JPEG whose header says
6000x6000) is refused or decoded at reduced scale without inflating it. What users really send
is read as they see it: EXIF orientation is applied, and phone-camera multi-picture JPEGs (MPO)
are read as their first frame.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from contract.errors import ImageTooLargeError, InvalidImageError, UnsupportedImageFormatError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
FORMAT_ALIASES = {"MPO": "JPEG"}
"""Formats read as another: an MPO is a JPEG with extra frames (we use the first)."""
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384
STORED_SHORT_SIDE = 512
STORED_LONG_SIDE = 2048
"""Images are kept at most this size after intake: larger than any CLIP input (224-448 px),
so the random-resized-crop views keep their detail, and small enough that a worker never holds
a decoded 36-megapixel frame."""

_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class NormalizedImage:
    image: Image.Image
    """RGB, upright, at most the stored size."""
    data: bytes
    """What to store: the original bytes when they already are that image, else a PNG of it."""
    decoded_pixels: int
    """Pixels actually decoded (after JPEG draft scaling): what the decode cost."""


def _open(data: bytes, field: str, allowed_formats: tuple[str, ...],
          opened: Image.Image | None = None) -> Image.Image:
    if not data:
        raise InvalidImageError("image is empty", field=field)
    image = opened if opened is not None else Image.open(io.BytesIO(data))
    fmt = FORMAT_ALIASES.get(image.format or "", image.format or "unknown")
    if fmt not in allowed_formats:
        raise UnsupportedImageFormatError(
            f"image format {fmt} is not allowed; allowed: {', '.join(allowed_formats)}", field=field)
    return image


def _check_size(image: Image.Image, field: str, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels or max(width, height) > MAX_SIDE:
        raise ImageTooLargeError(
            f"image is {width}x{height} pixels; at most {max_pixels} pixels and "
            f"{MAX_SIDE} per side are allowed", field=field)


def _refuse_bomb(image: Image.Image) -> None:
    """What Pillow's open warns of (more pixels than ``Image.MAX_IMAGE_PIXELS``), as an error."""
    pixels = image.size[0] * image.size[1]
    if Image.MAX_IMAGE_PIXELS and pixels > Image.MAX_IMAGE_PIXELS:
        raise Image.DecompressionBombWarning(
            f"{pixels} pixels exceeds the limit of {Image.MAX_IMAGE_PIXELS} pixels")


def stored_size(width: int, height: int, short_side: int = STORED_SHORT_SIDE,
                long_side: int = STORED_LONG_SIDE) -> tuple[int, int]:
    """(width, height) scaled down (never up) to fit the stored bounds, aspect kept."""
    scale = min(1.0, short_side / min(width, height), long_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(data: bytes, field: str, max_pixels: int, allowed_formats: tuple[str, ...],
            target: tuple[int, int] | None,
            opened: Image.Image | None = None) -> tuple[Image.Image, bool, int]:
    """(RGB upright image, whether it differs from what the bytes decode to plainly, decoded
    pixels). With ``target``, JPEGs are decoded at the smallest DCT scale still >= target.
    ``opened``: the bytes already opened by ``probe`` (not decoded yet)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = _open(data, field, allowed_formats, opened)
            if opened is not None:  # ``probe`` silenced Pillow's bomb warning at open: check here
                _refuse_bomb(image)
            _check_size(image, field, max_pixels)
            original_size = image.size
            if target is not None and image.format in ("JPEG", "MPO"):
                image.draft("RGB", target)
            image.load()  # decode now so truncation is caught here, not mid-method
            changed = image.size != original_size or image.format == "MPO"
            decoded = image.size[0] * image.size[1]
            if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
                image = ImageOps.exif_transpose(image)
                changed = True
            if image.mode != "RGB":
                image = image.convert("RGB")
            return image, changed, decoded
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {exc}", field=field) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not a readable image (unknown or corrupt format)", field=field) from exc
    except ValueError as exc:
        if "too large" in str(exc).lower() or "too much memory" in str(exc).lower():
            # zlib bombs in PNG text (zTXt/iTXt) or colour-profile (iCCP) chunks
            raise ImageTooLargeError(f"image rejected as a decompression bomb: {exc}", field=field) from exc
        raise InvalidImageError(f"image is corrupt or truncated: {exc}", field=field) from exc
    except (OSError, SyntaxError) as exc:
        raise InvalidImageError(f"image is corrupt or truncated: {exc}", field=field) from exc


def decode_image(
    data: bytes, *, field: str = "image", max_pixels: int = MAX_PIXELS,
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Fully decoded RGB image at full size (EXIF orientation applied), or an
    InvalidImageError subclass saying what is wrong."""
    return _decode(data, field, max_pixels, allowed_formats, None)[0]


def probe(data: bytes) -> Image.Image | None:
    """The image opened from its header alone (nothing decoded), to be decoded later by
    ``normalize_image``; None if it cannot be read (decoding it then says why). A bomb's
    warning is silenced here: the size limits refuse it when it is decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            return Image.open(io.BytesIO(data)) if data else None
        except Exception:
            return None


def header_pixels(image: Image.Image | None) -> int:
    """Width x height of what ``probe`` opened (its header alone); 0 if it could not be read."""
    if image is None:
        return 0
    width, height = image.size
    return int(width) * int(height)


def normalize_image(data: bytes, *, field: str = "image", max_pixels: int = MAX_PIXELS,
                    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
                    probed: Image.Image | None = None) -> NormalizedImage:
    """Decode once at intake and bound what is kept: upright RGB within the stored size. The
    original bytes are kept when they already decode to exactly that image. ``probed``: what
    ``probe`` opened of ``data`` (it is opened once, not once per look)."""
    opened = probed if probed is not None else probe(data)
    target = stored_size(*(opened.size if opened is not None else (1, 1)))
    image, changed, decoded = _decode(data, field, max_pixels, allowed_formats, target, opened)
    if image.size != stored_size(*image.size):
        image = image.resize(stored_size(*image.size), Image.Resampling.BICUBIC)
        changed = True
    if not changed:
        return NormalizedImage(image, data, decoded)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return NormalizedImage(image, buffer.getvalue(), decoded)
