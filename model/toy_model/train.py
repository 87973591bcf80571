"""Stages 1-2 of the toy model, with SAM learnt alongside: one optimizer over every network.

Each step takes ``batch_size`` scenes, builds one conversation per scene (toy_model.conversations) and
computes, on the same forward:
- the language-model cross-entropy of the answers, plus the location losses (toy_model.losses);
- SAM's mask loss (model.stage3.loss ``clean``: focal x 20 + dice + iou-mse, padding ignored) for every
  object an answer located, prompted like inference prompts SAM: the object's box (the ground truth,
  jittered by ``box_jitter`` of its size) and ``seg_prompt_mlp`` of the ``<at>`` hidden state (detached:
  masks teach SAM and the seg prompt, not the language model), in SAM's padded frame.
The CLIP tower is trained too: there is no pretrained tower of this size (the release freezes a
pretrained one, taught by 400M image-text pairs). In place of that pretraining, linear probes on the
tower's selected features predict each patch's object category and colour (toy_model.data's patch
targets) and its row and column in the grid (so that where a patch is stays readable in its features:
the language model's RoPE gives relative positions only, and the boxes are read off what the ``<at>``
token gathers); cross-entropy, weight ``patch_weight``. A fifth, linear, regresses the box of the
patch's object (L1, weight ``patch_box_weight``, on patches that belong to an object): a detector's dense
target, so that the ``<at>`` token only has to find a patch of the object, not work out its extent. The
probes are thrown away, only the tower keeps what they taught it. Schedule: linear warm-up, cosine decay;
AdamW; gradients clipped at 1.0.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..processing import upscale_mask_logits
from ..stage3.loss import mask_loss
from ..toy_world import CATEGORIES
from .conversations import ConversationBatch, build_conversation, collate
from .data import COLOURS, SceneCache
from .losses import location_losses
from .sam_batch import decode_single_masks


@dataclass
class JointRecipe:
    steps: int = 8000
    batch_size: int = 16
    lr: float = 1e-3
    warmup: int = 150
    weight_decay: float = 0.01
    box_jitter: float = 0.1
    max_turns: int = 2
    sam_images: int = 8          # images of a step whose located objects train SAM
    sam_masks_per_image: int = 3
    patch_weight: float = 1.0
    patch_box_weight: float = 2.0   # the box probe's L1 (as the box loss weighs L1)
    easy_steps: int = 0          # first steps drawn from scenes of at most ``easy_objects`` objects
    easy_objects: int = 2
    seed: int = 0
    log_every: int = 50


def lr_at(step: int, recipe: JointRecipe) -> float:
    if step < recipe.warmup:
        return recipe.lr * (step + 1) / recipe.warmup
    progress = (step - recipe.warmup) / max(1, recipe.steps - recipe.warmup)
    return recipe.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


class JointTrainer:
    def __init__(self, model, clip, tokenizer, cache: SceneCache, recipe: JointRecipe):
        self.model, self.clip, self.tokenizer, self.cache, self.recipe = model, clip, tokenizer, cache, recipe
        self.ids = tokenizer.ids
        self.select_layer = model.config.mm_vision_select_layer
        self.num_image_tokens = (clip.config.image_size // clip.config.patch_size) ** 2
        width = clip.config.hidden_size
        self.grid = clip.config.image_size // clip.config.patch_size
        self.probes = torch.nn.ModuleDict({"category": torch.nn.Linear(width, len(CATEGORIES) + 1),
                                           "colour": torch.nn.Linear(width, len(COLOURS) + 1),
                                           "row": torch.nn.Linear(width, self.grid),
                                           "column": torch.nn.Linear(width, self.grid),
                                           "box": torch.nn.Linear(width, 4)})
        params = [p for p in [*model.parameters(), *clip.parameters(), *self.probes.parameters()] if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
        self.params = params
        self.rng = random.Random(recipe.seed)
        self.easy = [i for i, scene in enumerate(cache.scenes) if len(scene.objects) <= recipe.easy_objects]
        self.step_index = 0

    def train(self, log=print, save=None, save_every: int = 0) -> list[dict]:
        """``save()`` is called every ``save_every`` steps (0: never), with the networks in eval mode."""
        self.model.train()
        self.clip.train()
        history, started = [], time.monotonic()
        for step in range(self.recipe.steps):
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(step, self.recipe)
            terms = self.step()
            if step % self.recipe.log_every == 0 or step == self.recipe.steps - 1:
                terms.update(step=step, seconds=round(time.monotonic() - started, 1))
                history.append(terms)
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in terms.items()))
            if save and save_every and (step + 1) % save_every == 0:
                self.model.eval()
                self.clip.eval()
                save()
                self.model.train()
                self.clip.train()
        self.model.eval()
        self.clip.eval()
        return history

    def step(self) -> dict:
        pool = self.easy if self.step_index < self.recipe.easy_steps and self.easy else range(len(self.cache))
        self.step_index += 1
        rows = self.rng.sample(pool, min(self.recipe.batch_size, len(pool)))
        batch = collate([build_conversation(self.cache.scenes[r], self.tokenizer, self.num_image_tokens, self.rng,
                                            self.recipe.max_turns) for r in rows], self.ids.boxes, self.ids.eos)
        hidden, logits, read, features = self.forward(rows, batch)
        patches = self.patch_loss(rows, features)
        lm = F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=-100)
        at = (batch.ids == self.ids.at) & batch.predicted
        hidden_at = hidden[at]                                                     # [m, H]
        answer_boxes = read.boxes[read.is_answer]
        located = location_losses(self.model, hidden_at, answer_boxes, read.boxes, read.embeddings)
        masks = self.mask_terms(rows, batch, hidden_at.detach())
        loss = lm + located.total + masks["loss"] + self.recipe.patch_weight * patches
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        with torch.no_grad():
            iou = box_iou_mean(self.model.loc_decoder(hidden_at.detach()), answer_boxes)
        terms = {"loss": loss, "lm": lm, "box": located.box, "cycle_out": located.cycle_out,
                 "cycle_in": located.cycle_in, "mask": masks["loss"], "patch": patches}
        return {**{k: float(v.detach()) for k, v in terms.items()}, "box_iou": iou, "mask_iou": masks["iou"]}

    def forward(self, rows: list[int], batch: ConversationBatch):
        pixels = self.cache.clip_pixels[rows].float()
        features = self.clip(pixel_values=pixels, output_hidden_states=True).hidden_states[self.select_layer][:, 1:]
        image_tokens = self.model.mm_projector(features)                           # [B, N, H]
        embeds = self.model.embed_tokens(batch.ids).clone()                         # [B, T, H]
        embeds[batch.ids == self.ids.im_patch] = image_tokens.flatten(0, 1).to(embeds.dtype)
        read = ReadBoxes.of(self.cache, batch, rows)
        read.embeddings = self.model.box_embeddings(read.boxes)                     # [n, H]
        embeds[batch.ids == self.ids.boxes] = read.embeddings.to(embeds.dtype)
        out = self.model.model(inputs_embeds=embeds, attention_mask=batch.attention, use_cache=False)
        hidden = out.last_hidden_state
        return hidden, self.model.lm_head(hidden), read, features

    def patch_loss(self, rows: list[int], features: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the probes: each patch's category, colour, row and column ([B, N, C] features)."""
        cells = torch.arange(self.grid * self.grid).expand(len(rows), -1)
        targets = {"category": self.cache.patch_categories[rows], "colour": self.cache.patch_colours[rows],
                   "row": cells // self.grid, "column": cells % self.grid}
        classes = sum(F.cross_entropy(self.probes[name](features).flatten(0, 1), target.flatten())
                      for name, target in targets.items())
        covered = self.cache.patch_categories[rows] > 0                             # [B, N]
        if not covered.any():
            return classes
        boxes = self.probes["box"](features)[covered]                               # [m, 4]
        return classes + self.recipe.patch_box_weight * F.l1_loss(boxes, self.cache.patch_boxes[rows][covered])

    def mask_terms(self, rows: list[int], batch: ConversationBatch, hidden_at: torch.Tensor) -> dict:
        """SAM's clean mask loss over the located objects of the step's first images (one decoder call)."""
        sam = self.model.sam
        size = sam.image_encoder.img_size
        answer_rows, answer_objects = batch.box_rows[batch.box_is_answer], batch.box_objects[batch.box_is_answer]
        if not len(hidden_at):
            return {"loss": hidden_at.sum() * 0, "iou": float("nan")}
        used = sorted(set(answer_rows.tolist()))[: self.recipe.sam_images]
        embeddings = sam.image_encoder(self.cache.sam_pixels([rows[r] for r in used]))   # [I, C, h, w]
        picks = torch.cat([(answer_rows == row).nonzero()[:, 0][: self.recipe.sam_masks_per_image] for row in used])
        slots = torch.tensor([used.index(row) for row in answer_rows[picks].tolist()])        # [P] image of each
        scenes = [rows[row] for row in answer_rows[picks].tolist()]
        objects = answer_objects[picks].tolist()
        boxes = torch.stack([self.cache.boxes[scene][obj] for scene, obj in zip(scenes, objects)])
        sparse, dense = sam.prompt_encoder(points=None, boxes=jitter(boxes, self.recipe.box_jitter, self.rng) * size,
                                           masks=None)
        prompts = self.model.seg_prompt_mlp(hidden_at[picks]).view(len(picks), self.model.seg_prompt_tokens, -1)
        low_res, ious = decode_single_masks(sam.mask_decoder, embeddings[slots], sam.prompt_encoder.get_dense_pe(),
                                            torch.cat([prompts, sparse], dim=1), dense)
        masks = {scene: self.cache.masks(scene) for scene in set(scenes)}                    # unpacked once a scene
        targets = torch.stack([masks[scene][obj] for scene, obj in zip(scenes, objects)]).float()
        valid = torch.stack([self.cache.valid(rows[row]) for row in used])[slots]              # [P, S, S]
        terms = mask_loss("clean", upscale_mask_logits(low_res, size), targets[:, None], ious, valid[:, None])
        return {"loss": terms.total, "iou": sum(terms.per_mask["iou_target"]) / len(terms.per_mask["iou_target"])}


@dataclass
class ReadBoxes:
    boxes: torch.Tensor        # [n, 4] the box of every <boxes> id, row-major over the batch
    is_answer: torch.Tensor    # [n] bool
    embeddings: torch.Tensor | None = None

    @classmethod
    def of(cls, cache: SceneCache, batch: ConversationBatch, rows: list[int]) -> ReadBoxes:
        """``rows``: the scene of each conversation."""
        boxes = [cache.boxes[rows[row]][obj] for row, obj in zip(batch.box_rows.tolist(), batch.box_objects.tolist())]
        stacked = torch.stack(boxes) if boxes else torch.zeros((0, 4))
        return cls(stacked, batch.box_is_answer)


def jitter(boxes: torch.Tensor, fraction: float, rng: random.Random) -> torch.Tensor:
    """Each corner moved by up to ``fraction`` of the box's width / height, kept in [0, 1] and well formed."""
    if not fraction:
        return boxes
    size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
    noise = torch.tensor([[rng.uniform(-fraction, fraction) for _ in range(4)] for _ in range(len(boxes))])
    moved = (boxes + noise * size).clamp(0, 1)
    low, high = torch.minimum(moved[:, :2], moved[:, 2:]), torch.maximum(moved[:, :2], moved[:, 2:])
    return torch.cat([low, high], dim=1)


def box_iou_mean(predicted: torch.Tensor, target: torch.Tensor) -> float:
    if not len(predicted):
        return float("nan")
    from torchvision.ops import box_iou

    fixed = torch.cat([torch.minimum(predicted[:, :2], predicted[:, 2:]),
                       torch.maximum(predicted[:, :2], predicted[:, 2:])], dim=1)
    return float(torch.diag(box_iou(fixed, target)).mean())
