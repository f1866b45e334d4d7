"""Decoding untrusted image bytes safely (torch-free: the API uses it too).

Checks happen before pixels are decoded: the header gives the format and size, so a
decompression bomb (a tiny PNG that inflates to gigapixels) is refused without inflating it.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from models.errors import InvalidImageError

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
MAX_PIXELS = 40_000_000
MAX_SIDE = 16_384


class UnsupportedImageFormatError(InvalidImageError):
    code = "unsupported_image_format"


class ImageTooLargeError(InvalidImageError):
    code = "image_too_large"


def decode_image(
    data: bytes, *, field: str = "image", max_pixels: int = MAX_PIXELS,
    allowed_formats: tuple[str, ...] = ALLOWED_FORMATS,
) -> Image.Image:
    """Fully decoded RGB image, or an InvalidImageError subclass saying what is wrong."""
    if not data:
        raise InvalidImageError("image is empty", field=field)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            fmt = image.format or "unknown"
            if fmt not in allowed_formats:
                raise UnsupportedImageFormatError(
                    f"image format {fmt} is not allowed; allowed: {', '.join(allowed_formats)}",
                    field=field,
                )
            width, height = image.size
            if width * height > max_pixels or max(width, height) > MAX_SIDE:
                raise ImageTooLargeError(
                    f"image is {width}x{height} pixels; at most {max_pixels} pixels and "
                    f"{MAX_SIDE} per side are allowed", field=field,
                )
            image.load()  # decode now so truncation is caught here, not mid-method
            return image.convert("RGB")
    except InvalidImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image rejected as a decompression bomb: {exc}", field=field) from exc
    except UnidentifiedImageError as exc:
        raise InvalidImageError("not a readable image (unknown or corrupt format)", field=field) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"image is corrupt or truncated: {exc}", field=field) from exc
