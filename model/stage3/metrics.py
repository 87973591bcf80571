"""Segmentation metrics at the original image size.

cIoU = sum of intersections / sum of unions over all samples (the reference's RES metric), gIoU = mean of
the per-sample IoUs. A predicted mask is the 1024-frame logits resized to the image's square, > 0, and
cropped (as ``ground()`` does). A sample whose intersection is 0 counts as failed. By default the ground
truth is binarised (pixels > 0); ``count_overlaps=True`` counts pixels of value 2 (inside two polygons)
twice, as the reference's evaluation does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..processing import ImageFrame, mask_logits_to_masks


@dataclass(frozen=True)
class SegMetrics:
    count: int
    intersection: int
    union: int
    ciou: float
    giou: float
    failed: int

    def as_dict(self) -> dict:
        return asdict(self)


def iou_counts(pred: np.ndarray, gt: np.ndarray, count_overlaps: bool = False) -> tuple[int, int]:
    """(I, U) of a bool [H, W] prediction and a uint8 [H, W] ground truth."""
    truth = gt.astype(np.int64) if count_overlaps else (gt > 0).astype(np.int64)
    predicted = pred.astype(np.int64)
    intersection = int((predicted * truth).sum())
    return intersection, int(predicted.sum() + truth.sum() - intersection)


def summarize(counts: list[tuple[int, int]]) -> SegMetrics:
    total_i = sum(i for i, _ in counts)
    total_u = sum(u for _, u in counts)
    per_sample = [i / u if u else 1.0 for i, u in counts]
    return SegMetrics(count=len(counts), intersection=total_i, union=total_u,
                      ciou=total_i / total_u if total_u else 0.0,
                      giou=float(np.mean(per_sample)) if per_sample else 0.0,
                      failed=sum(1 for i, _ in counts if i <= 0))


def masks_at_image_size(logits: torch.Tensor, frames: list[ImageFrame]) -> list[np.ndarray]:
    """[k,1,1024,1024] logits in SAM's padded frame -> k bool masks [H, W], each at its image's size."""
    logits = logits.detach()
    return [mask_logits_to_masks(logits[i:i + 1], frame)[0].cpu().numpy() for i, frame in enumerate(frames)]


def evaluate_end_to_end(nc, data, queries, count_overlaps: bool = False) -> tuple[SegMetrics, list[tuple[int, int]]]:
    """Through ``nc.ground(image, expression)`` (free-running decoding, the backend's question): the first
    region's mask, or an empty one when the model locates nothing. ``data`` is a ``Stage3Data``."""
    from .data import load_image

    counts = []
    for query in queries:
        record = data.records[query.record_index]
        regions = nc.ground(load_image(data.data_dir, record), query.expression)
        pred = regions[0].mask if regions else np.zeros((record.height, record.width), dtype=bool)
        counts.append(iou_counts(pred, data.gt_mask(query.record_index), count_overlaps))
    return summarize(counts), counts
