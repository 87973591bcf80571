"""BitmaskLabels results: a bool mask -> Label Studio's pixel mask, a PNG data URL.

Label Studio 1.2x's BitmaskLabels region stores ``value.imageDataURL``: a PNG at the image's natural
size, black (alpha 255) where the mask is and transparent elsewhere, as its editor's canvas exports it;
the editor redraws the region from that PNG. Read back with :func:`bitmask_url_to_mask`.
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np
from PIL import Image

from backend.studio.results.common import ShapeResultBuilder, new_region_id, region_result

DATA_URL_PREFIX = "data:image/png;base64,"


def mask_to_bitmask_url(mask: np.ndarray) -> str:
    """PNG data URL of a (height, width) bool mask: black opaque pixels on a transparent background."""
    array = np.asarray(mask).astype(bool)
    rgba = np.zeros((*array.shape, 4), dtype=np.uint8)
    rgba[..., 3] = np.where(array, 255, 0)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", optimize=True)
    return DATA_URL_PREFIX + base64.b64encode(buffer.getvalue()).decode("ascii")


def bitmask_url_to_mask(url: str, width: int, height: int) -> np.ndarray:
    """Bool (height, width) mask of an ``imageDataURL`` (a pixel is in the mask where its alpha is over half);
    ValueError for anything but a PNG data URL of exactly that size."""
    if not isinstance(url, str) or not url.startswith(DATA_URL_PREFIX):
        raise ValueError("imageDataURL is not a data:image/png;base64 URL")
    try:
        data = base64.b64decode(url[len(DATA_URL_PREFIX):], validate=True)
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise ValueError("imageDataURL does not hold a PNG")
            if image.size != (int(width), int(height)):
                raise ValueError(f"imageDataURL is {image.size[0]}x{image.size[1]}, not the image's {width}x{height}")
            alpha = np.asarray(image.convert("RGBA"))[..., 3]
    except (binascii.Error, OSError) as exc:
        raise ValueError(f"imageDataURL is not a readable PNG ({type(exc).__name__})") from None
    return alpha > 127


class BitmaskLabelsResult(ShapeResultBuilder):
    """Builds results for one BitmaskLabels control on an image of known natural size."""

    result_type = "bitmasklabels"

    def build(self, mask: np.ndarray, label: str, *, score: float | None = None,
              region_id: str | None = None) -> dict[str, Any] | None:
        """Bitmask result for a (height, width) mask; None when the mask is empty."""
        array = np.asarray(mask)
        if array.shape != (self.height, self.width):
            raise ValueError(f"mask shape {array.shape} is not the image size {(self.height, self.width)}")
        if not array.any():
            return None
        value = {"imageDataURL": mask_to_bitmask_url(array), self.result_type: [label]}
        return region_result(region_id=region_id or new_region_id(), from_name=self.from_name,
                             to_name=self.to_name, result_type=self.result_type,
                             width=self.width, height=self.height, value=value, score=score)
