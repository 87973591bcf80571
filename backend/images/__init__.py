"""Task images: fetched under the SSRF policy (loader) and decoded under the byte and pixel caps (decode)."""

from backend.images.decode import ImageError, decode_image
from backend.images.loader import ImageLoader, is_public_address

__all__ = ["ImageError", "ImageLoader", "decode_image", "is_public_address"]
