"""Stage-3 mask losses: ``reference`` (the release's SamLoss, quirks included) and ``clean``.

Both take, for a batch of k masks, logits [k,1,1024,1024] in SAM's padded frame, targets [k,1,1024,1024]
(float, 0/1/2 as decoded) and SAM's iou predictions [k,1], and give 20 x focal + dice + iou-mse.

``reference`` reproduces what the release computes, so published recipes transfer:

- The batch's mask count k reaches the focal and dice terms as their 3rd positional argument, i.e. as
  focal ``alpha`` and dice ``smooth`` (the intended alpha 0.8 and smooth 1 are never used). Each mask's
  focal term is therefore weighted by k, and a batch's focal part grows like k^2.
- Focal is taken on the *image-mean* BCE: one scalar per mask, alpha * (1 - exp(-bce))^2 * bce.
- The IoU target thresholds the logits at 0.5 (not 0), and the squared error is summed then divided by k.
- Focal and dice are summed over the masks, not averaged.
- Everything is in the 1024 x 1024 frame, padding counted as background; target pixels of value 2
  (overlapping polygons) stay 2 in the BCE, the dice and the IoU target.

``clean`` is what the loss was meant to be: targets binarised, padding ignored, per-pixel focal loss with
alpha 0.8 and gamma 2, dice with smooth 1, IoU target from the mask as inference thresholds it (logit > 0),
each term averaged over the masks (batch-size independent).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
GAMMA = 2
CLEAN_ALPHA = 0.8
CLEAN_SMOOTH = 1.0
LOSS_MODES = ("reference", "clean")


@dataclass
class LossTerms:
    total: torch.Tensor        # scalar, with grad
    focal_x20: torch.Tensor    # 20 x the focal part
    dice: torch.Tensor
    iou_mse: torch.Tensor
    per_mask: dict[str, list[float]] = field(default_factory=dict)

    def as_floats(self) -> dict[str, float]:
        return {"loss": float(self.total.detach()), "focal_x20": float(self.focal_x20.detach()),
                "dice": float(self.dice.detach()),
                "iou_mse": float(self.iou_mse.detach())}


def mask_loss(mode: str, logits: torch.Tensor, targets: torch.Tensor, iou_pred: torch.Tensor,
              valid: torch.Tensor | None = None) -> LossTerms:
    if mode == "reference":
        return reference_loss(logits, targets, iou_pred)
    if mode == "clean":
        if valid is None:
            valid = torch.ones_like(targets, dtype=torch.bool)
        return clean_loss(logits, targets, iou_pred, valid)
    raise ValueError(f"unknown loss {mode!r}; use one of {list(LOSS_MODES)}")


def reference_loss(logits: torch.Tensor, targets: torch.Tensor, iou_pred: torch.Tensor) -> LossTerms:
    """The release's SamLoss over a batch, mask by mask in its order of operations."""
    count = logits.shape[0]
    focal_sum = dice_sum = iou_sum = 0.0
    per_mask: dict[str, list[float]] = {"bce": [], "focal": [], "dice": [], "iou_target": []}
    for pred, target, iou in zip(logits[:, 0], targets[:, 0], iou_pred):   # [1024,1024], [1024,1024], [1]
        bce = F.binary_cross_entropy_with_logits(pred.reshape(-1), target.reshape(-1), reduction="mean")
        focal = count * (1 - torch.exp(-bce)) ** GAMMA * bce                  # alpha = k
        probs = torch.sigmoid(pred).clamp(0, 1)
        intersection = (probs * target).sum()
        dice = 1 - (2.0 * intersection + count) / (probs.sum() + target.sum() + count)   # smooth = k
        iou_target = reference_iou_target(pred, target)
        iou_err = F.mse_loss(iou.reshape(-1), iou_target.reshape(-1), reduction="sum") / count
        focal_sum, dice_sum, iou_sum = focal_sum + focal, dice_sum + dice, iou_sum + iou_err
        for key, value in (("bce", bce), ("focal", focal), ("dice", dice), ("iou_target", iou_target)):
            per_mask[key].append(float(value.detach()))
    focal_x20 = FOCAL_WEIGHT * focal_sum
    return LossTerms(total=focal_x20 + dice_sum + iou_sum, focal_x20=focal_x20, dice=dice_sum, iou_mse=iou_sum,
                     per_mask=per_mask)


def reference_iou_target(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of (logits >= 0.5) with the target as given (2s count twice); no gradient."""
    with torch.no_grad():
        hard = pred >= 0.5
        intersection = (hard * target).sum()
        union = hard.sum() + target.sum() - intersection
        return intersection / (union + 1e-7)


def clean_loss(logits: torch.Tensor, targets: torch.Tensor, iou_pred: torch.Tensor,
               valid: torch.Tensor) -> LossTerms:
    """Per-pixel focal (alpha 0.8, gamma 2) + dice (smooth 1) + iou-mse, over the image region only,
    each averaged over the k masks. ``valid`` [k,1,1024,1024] bool marks the image inside the padding."""
    count = logits.shape[0]
    binary = (targets > 0).to(logits.dtype)
    weight = valid.to(logits.dtype)
    pixels = weight.flatten(1).sum(1).clamp(min=1)                                   # [k]
    probs = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, binary, reduction="none")
    p_true = probs * binary + (1 - probs) * (1 - binary)
    focal = (CLEAN_ALPHA * (1 - p_true) ** GAMMA * bce * weight).flatten(1).sum(1) / pixels   # [k]
    intersection = (probs * binary * weight).flatten(1).sum(1)
    dice = 1 - (2 * intersection + CLEAN_SMOOTH) / (
        (probs * weight).flatten(1).sum(1) + (binary * weight).flatten(1).sum(1) + CLEAN_SMOOTH)
    with torch.no_grad():
        hard = (logits > 0) & valid
        inter = (hard & (binary > 0)).flatten(1).sum(1).to(logits.dtype)
        union = (hard | (binary > 0)).flatten(1).sum(1).to(logits.dtype)
        iou_target = inter / union.clamp(min=1)
    iou_err = (iou_pred.reshape(-1) - iou_target) ** 2
    focal_x20 = FOCAL_WEIGHT * focal.sum() / count
    dice_mean, iou_mean = dice.sum() / count, iou_err.sum() / count
    per_mask = {"focal": focal.tolist(), "dice": dice.tolist(), "iou_target": iou_target.tolist()}
    return LossTerms(total=focal_x20 + dice_mean + iou_mean, focal_x20=focal_x20, dice=dice_mean,
                     iou_mse=iou_mean, per_mask=per_mask)
