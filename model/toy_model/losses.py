"""The stage-1/2 losses of NExT-Chat, as the paper and the release's training code define them.

For the ``<at>`` tokens the model emits (the answer's), with h their last-layer hidden states and b the
ground-truth boxes (normalised xyxy):
- box:     2 x L1(loc_decoder(h), b) + GIoU loss / 5 (GIoU only where the predicted box is well formed,
           x2 >= x1 and y2 >= y1);
- cycle 1: MSE(loc_encoder(loc_decoder(h)), h), the embedding fed back after ``<at>`` agrees with h;
and for every box the model reads (input boxes and the answer's ground-truth boxes, embedded at their
``<boxes>`` token):
- cycle 2: L1(loc_decoder(loc_encoder(b)), b).
All are means, added to the language-model cross-entropy with weight 1 (the release adds them as they are).
The release's ``masked_loss`` also multiplies the last item of each term by 1e-10 and its LM loss drops
the batch's last sample (``logits[:-1]``); those are bookkeeping slips, not the recipe, and are not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou

BOX_L1_WEIGHT, GIOU_WEIGHT = 2.0, 0.2


@dataclass
class LocationLosses:
    box: torch.Tensor
    cycle_out: torch.Tensor
    cycle_in: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.box + self.cycle_out + self.cycle_in


def box_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[m,4] predicted and target normalised xyxy boxes -> 2 x L1 + GIoU / 5."""
    l1 = F.l1_loss(predicted, target)
    well_formed = (predicted[:, 2:] >= predicted[:, :2]).all(-1)
    if well_formed.any():
        giou = 1 - torch.diag(generalized_box_iou(predicted[well_formed], target[well_formed]))
        giou = giou.mean()
    else:
        giou = predicted.sum() * 0
    return BOX_L1_WEIGHT * l1 + GIOU_WEIGHT * giou


def location_losses(model, hidden_at: torch.Tensor, target_boxes: torch.Tensor, read_boxes: torch.Tensor,
                    read_embeddings: torch.Tensor) -> LocationLosses:
    """``hidden_at`` [m,H] with ``target_boxes`` [m,4]; ``read_boxes`` [n,4] embedded as ``read_embeddings``."""
    zero = hidden_at.sum() * 0
    if len(hidden_at):
        predicted = model.loc_decoder(hidden_at)
        box = box_loss(predicted, target_boxes)
        cycle_out = F.mse_loss(model.loc_encoder(predicted), hidden_at)
    else:
        box = cycle_out = zero
    cycle_in = F.l1_loss(model.loc_decoder(read_embeddings), read_boxes) if len(read_boxes) else zero
    return LocationLosses(box, cycle_out, cycle_in)
