"""Image bytes -> an upright 8-bit RGB image, with a format allowlist and a pixel cap read from the
header before any pixel is decoded. The pixel rules (EXIF, alpha, 16-bit) are the model's own
(model.processing.to_rgb), so the CLI and the backend feed the model identical pixels."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from urllib.parse import unquote_to_bytes

from PIL import Image, UnidentifiedImageError

from backend.settings import Settings
from model.processing import to_rgb

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


class ImageError(Exception):
    """A task's image could not be loaded; str(error) is a one-line reason."""


def decode_data_uri(value: str, max_bytes: int | None = None) -> bytes:
    """The bytes of a ``data:[<mime>][;base64],<payload>`` URI; ImageError for a malformed or oversized one."""
    header, sep, payload = value[len("data:"):].partition(",")
    if not sep:
        raise ImageError("malformed data URI (no comma)")
    if max_bytes is not None and len(payload) > max_bytes * 4 // 3 + 4:
        raise ImageError(f"data URI larger than MAX_IMAGE_BYTES={max_bytes}")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode("".join(payload.split()), validate=True)
        return unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise ImageError("malformed data URI (bad base64)") from None


def decode_image(data: bytes, settings: Settings) -> Image.Image:
    """Bytes -> RGB image, upright per EXIF; refuses disallowed formats and oversized headers."""
    if not data:
        raise ImageError("empty image file")
    formats = list(settings.image_formats)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise ImageError(f"not an image in an allowed format ({', '.join(formats)})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image has too many pixels") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken headers
        raise ImageError(f"unreadable image header: {type(exc).__name__}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError("image has no pixels")
    if width * height > settings.max_image_pixels:
        raise ImageError(
            f"image {width}x{height} exceeds MAX_IMAGE_PIXELS={settings.max_image_pixels}"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except Exception as exc:  # noqa: BLE001 - truncated/corrupt data: OSError, SyntaxError, ...
        raise ImageError(f"corrupt or truncated image ({image.format}): {type(exc).__name__}") from None
    try:
        return to_rgb(image)
    except (ValueError, OSError) as exc:
        raise ImageError(f"cannot convert image mode {image.mode} to RGB ({type(exc).__name__})") from None
