"""NExT-Chat inference: the public API (see README). One image is encoded once and answers many prompts."""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image
from transformers import DynamicCache

from . import prompts
from .batch_decode import decode_greedy_batch
from .beam_search import beam_search
from .builder import Components, load_components
from .decoding import Decoded, DecodeOptions, Stepper, decode_single, never_stop
from .processing import (
    ImageFrame,
    boxes_norm_to_pixels,
    boxes_pixels_to_norm,
    check_point_prompts,
    clamp_box,
    clip_pixel_values,
    mask_logits_to_masks,
    points_pixels_to_norm,
    sam_pixel_values,
    to_rgb,
    upscale_mask_logits,
)
from .results import Answer, Caption, GenerationResult, Location, Region, clean_answer, phrases_for_locations
from .session import ImageSession, copy_cache, prefill_suffixes
from .versioning import checkpoint_version

GROUNDED_PER_IMAGE = 64  # expressions whose locations an image session remembers for refine()


class NextChat:
    """NExT-Chat: chat, detection and segmentation on one image."""

    def __init__(self, components: Components, image_cache_size: int = 4, max_batch: int = 16):
        self.components = components
        self.model = components.model
        self.tower = components.tower
        self.tokenizer = components.tokenizer
        self.ids = components.tokenizer.ids
        self._image_cache: OrderedDict[str, ImageSession] = OrderedDict()
        self._image_cache_size = image_cache_size
        self.max_batch = max_batch
        self._should_stop: Callable[[], bool] = never_stop
        self._lock = threading.RLock()

    @classmethod
    def from_pretrained(cls, checkpoint, vision_tower=None, device="cpu", dtype=torch.float32, delta=None,
                        **kwargs) -> NextChat:
        """``delta``: a stage-3 delta (``model.stage3``) applied to the loaded checkpoint."""
        return cls(load_components(checkpoint, vision_tower=vision_tower, device=device, dtype=dtype, delta=delta),
                   **kwargs)

    @contextmanager
    def stop_when(self, should_stop: Callable[[], bool]):
        """Within this block, decoding checks ``should_stop()`` before every step and raises
        :class:`model.GenerationStopped` when it says so (a request deadline: no zombie GPU work).
        Per instance: callers that share a model serialise their calls (the backend holds a lock)."""
        previous, self._should_stop = self._should_stop, should_stop
        try:
            yield self
        finally:
            self._should_stop = previous

    @property
    def device(self) -> torch.device:
        return self.model.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.lm_head.weight.dtype

    @property
    def model_version(self) -> str:
        """``<checkpoint name>@<revision>`` (model.versioning), plus ``+ft3.<delta id>`` while a stage-3 delta
        is applied."""
        delta = self.components.delta
        version = checkpoint_version(self.components.checkpoint_dir)
        return version if delta is None else f"{version}+ft3.{delta.short_id}"

    # ------------------------------------------------------------------ images
    def encode_image(self, image: Image.Image) -> ImageSession:
        """The per-image session (CLIP tokens, prefix KV cache; SAM lazily), cached by the image's content
        (never by a name or URL). The cache holds ``image_cache_size`` images."""
        image = to_rgb(image)
        key = _content_key(image)
        with self._lock:
            if key in self._image_cache:
                self._image_cache.move_to_end(key)
                return self._image_cache[key]
        session = self._new_session(image)
        with self._lock:
            self._image_cache[key] = session
            while len(self._image_cache) > self._image_cache_size:
                self._image_cache.popitem(last=False)
        return session

    @torch.no_grad()
    def _new_session(self, image: Image.Image) -> ImageSession:
        pixels = clip_pixel_values(image, self.components.clip_config)[None].to(self.device, self.dtype)
        tokens = self.model.mm_projector(self.tower(pixels))[0]
        session = ImageSession(image=image, frame=ImageFrame.of(image), image_tokens=tokens)
        ids = self.prompt_ids(prompts.plain(""))
        session.prefix_ids = ids[: ids.index(self.ids.im_end) + 1]
        session.prefix_cache = DynamicCache(config=self.model.config.llama)
        embeds = self.image_prompt_embeddings(session, torch.tensor(session.prefix_ids, device=self.device))
        self.model.forward_embeds(embeds[None], session.prefix_cache)
        return session

    @torch.no_grad()
    def sam_embedding(self, session: ImageSession) -> torch.Tensor:
        if session.sam_embedding is None:
            size = self.model.sam.image_encoder.img_size   # 1024 in the release; read from the weights
            pixels = sam_pixel_values(session.image, size)[None].to(self.device, self.dtype)
            session.sam_embedding = self.model.sam.image_encoder(pixels)
        return session.sam_embedding

    # ------------------------------------------------------------------ core
    def generate(self, image: Image.Image, text: str, boxes=None, max_new_tokens: int = 64, num_beams: int = 1,
                 forced_token_ids=None, output_logits: bool = False, **sampling) -> GenerationResult:
        """Answer ``text`` about ``image``. ``boxes`` (pixel xyxy) are referenced in the text as [0], [0,1]."""
        boxes = [] if boxes is None else [list(map(float, b)) for b in boxes]
        turn = prompts.with_box_references(text, len(boxes)) if boxes else prompts.plain(text)
        opts = DecodeOptions(max_new_tokens=max_new_tokens, num_beams=num_beams, output_logits=output_logits,
                             forced_token_ids=tuple(forced_token_ids) if forced_token_ids is not None else None,
                             **sampling)
        return self.run(image, turn, boxes, opts)

    def run(self, image: Image.Image, turn: prompts.UserTurn, boxes, opts: DecodeOptions) -> GenerationResult:
        return self._run_on(self.encode_image(image), turn, boxes, opts)

    @torch.no_grad()
    def _run_on(self, session: ImageSession, turn: prompts.UserTurn, boxes, opts: DecodeOptions) -> GenerationResult:
        opts.validate()
        embeds = self.suffix_embeddings(session, turn, boxes)
        step = Stepper(self.model, copy_cache(session.prefix_cache, self.model.config.llama), self._should_stop)
        logits, hidden = step(embeds[None])
        if opts.num_beams > 1:
            decoded = beam_search(step, logits[0], hidden[0], self.ids, opts)
        else:
            decoded = decode_single(step, logits[0], self.ids, opts)
        return self.finish(session, decoded)

    @torch.no_grad()
    def run_batch(self, image: Image.Image, turns: list[prompts.UserTurn],
                  max_new_tokens: int) -> list[GenerationResult]:
        """Greedy answers to many prompts about one image, decoded together (same ids as :meth:`run`)."""
        session = self.encode_image(image)
        results: list[GenerationResult] = []
        for start in range(0, len(turns), self.max_batch):
            chunk = [self.suffix_embeddings(session, turn, []) for turn in turns[start:start + self.max_batch]]
            pre = prefill_suffixes(self.model, session, chunk)
            decoded = decode_greedy_batch(self.model, pre.cache, pre.logits[:, -1].float(), pre.allowed[:, -1],
                                          pre.positions[:, -1] + 1, self.ids, max_new_tokens, self._should_stop)
            results += self.finish_many(session, decoded)
        return results

    def prompt_ids(self, turn: prompts.UserTurn) -> list[int]:
        return self.tokenizer.encode(prompts.render(turn, self.tower.num_patches))

    def image_prompt_embeddings(self, session: ImageSession, ids: torch.Tensor) -> torch.Tensor:
        embeds = self.model.embed_tokens(ids)
        patch_positions = (ids == self.ids.im_patch).nonzero()[:, 0]
        if len(patch_positions) != len(session.image_tokens):
            raise ValueError(f"prompt has {len(patch_positions)} image patch tokens but the tower gives "
                             f"{len(session.image_tokens)}")
        embeds[patch_positions] = session.image_tokens.to(embeds.dtype)
        return embeds

    def suffix_embeddings(self, session: ImageSession, turn: prompts.UserTurn, boxes) -> torch.Tensor:
        """Embeddings of the prompt after the cached prefix, input boxes at ``<boxes>`` (docs/model.md)."""
        ids = self.prompt_ids(turn)
        if ids[: session.prefix_len] != session.prefix_ids:
            raise ValueError("prompt does not start with the image prefix")
        ids = torch.tensor(ids[session.prefix_len:], device=self.device)
        embeds = self.model.embed_tokens(ids)
        box_positions = (ids == self.ids.boxes).nonzero()[:, 0]
        if len(box_positions) != len(turn.box_order):
            raise ValueError(f"prompt has {len(box_positions)} <boxes> tokens for {len(turn.box_order)} boxes")
        if len(box_positions):
            ordered = [boxes[i] for i in turn.box_order]
            norm = boxes_pixels_to_norm(ordered, session.frame).to(self.device)
            embeds[box_positions] = self.model.box_embeddings(norm).to(embeds.dtype)
        return embeds

    def finish_many(self, session: ImageSession, decoded: list[Decoded]) -> list[GenerationResult]:
        """Results of many decodings on one image, with one SAM decoder call for all their locations."""
        counts = [len(d.at_hidden) for d in decoded]
        if not sum(counts):
            return [self.finish(session, d) for d in decoded]
        located = self.decode_locations(session, torch.stack([h for d in decoded for h in d.at_hidden]))
        results, start = [], 0
        for d, n in zip(decoded, counts):
            results.append(self.finish(session, d, tuple(t[start:start + n] for t in located)))
            start += n
        return results

    def decode_locations(self, session: ImageSession, hidden_at: torch.Tensor):
        """SAM on k ``<at>`` hidden states: (boxes_norm [k,4], low-res logits, ious [k], seg prompts [k,T,D])."""
        boxes_norm, seg_prompts = self.model.locate(hidden_at)
        low_res, ious = self.model.sam_masks(boxes_norm, self.sam_embedding(session), seg_prompts)
        return boxes_norm, low_res, ious, seg_prompts

    def finish(self, session: ImageSession, decoded: Decoded, decoded_masks=None) -> GenerationResult:
        frame = session.frame
        text = self.tokenizer.decode(decoded.token_ids)
        logits = torch.stack(decoded.logits).float().cpu() if decoded.logits else None
        if not decoded.at_hidden:
            return GenerationResult(decoded.token_ids, text, torch.zeros((0, 4)), torch.zeros((0, 4)),
                                    torch.zeros(0), torch.zeros((0, frame.height, frame.width), dtype=torch.bool),
                                    logits, None)
        if decoded_masks is None:
            decoded_masks = self.decode_locations(session, torch.stack(decoded.at_hidden))
        boxes_norm, low_res, ious, seg_prompts = decoded_masks
        boxes_norm = boxes_norm.float().cpu()
        masks = mask_logits_to_masks(upscale_mask_logits(low_res), frame).cpu()
        return GenerationResult(decoded.token_ids, text, boxes_norm, boxes_norm_to_pixels(boxes_norm, frame),
                                ious.float().cpu(), masks, logits, low_res.float().cpu(), seg_prompts.float().cpu())

    # ------------------------------------------------------------------ what users reach for
    def ground(self, image: Image.Image, expression: str, max_new_tokens: int = 32) -> list[Region]:
        """Regions for a referring expression (REC/RES): one per located box, mask and score."""
        return self._ground_on(self.encode_image(image), expression, max_new_tokens)

    def _ground_on(self, session: ImageSession, expression: str, max_new_tokens: int) -> list[Region]:
        opts = DecodeOptions(max_new_tokens=max_new_tokens)
        result = self._run_on(session, prompts.referring(expression), [], opts)
        regions = self.regions(result, [expression] * len(result.boxes))
        return self._remember(session, expression, max_new_tokens, regions)

    @staticmethod
    def _remember(session: ImageSession, expression: str, max_new_tokens: int, regions: list[Region]) -> list[Region]:
        """Keep the locations ``expression`` gave on this image, for :meth:`refine` (the oldest go first)."""
        remembered = session.grounded
        remembered.pop((expression, max_new_tokens), None)
        remembered[(expression, max_new_tokens)] = [r.location for r in regions]
        while len(remembered) > GROUNDED_PER_IMAGE:
            remembered.pop(next(iter(remembered)))
        return regions

    def ground_many(self, image: Image.Image, expressions: list[str], max_new_tokens: int = 32) -> list[list[Region]]:
        """``ground`` for each expression: the image encoded once, the prompts decoded as one batch."""
        if not expressions:
            return []
        results = self.run_batch(image, [prompts.referring(e) for e in expressions], max_new_tokens)
        regions = [self.regions(r, [e] * len(r.boxes)) for r, e in zip(results, expressions)]
        with self._lock:
            session = self._image_cache.get(_content_key(to_rgb(image)))   # the one run_batch used, if kept
        if session is not None:
            for expression, found in zip(expressions, regions):
                self._remember(session, expression, max_new_tokens, found)
        return regions

    def describe(self, image: Image.Image, box, max_new_tokens: int = 64) -> str:
        """A description of one pixel-xyxy region (REG)."""
        result = self.run(image, prompts.region_description(), [list(map(float, box))],
                          DecodeOptions(max_new_tokens=max_new_tokens))
        return result.clean_text

    def segment(self, image: Image.Image, box=None, points=None, point_labels=None,
                location: Location | None = None, phrase: str = "") -> Region:
        """A mask from SAM's decoder for a drawn pixel-xyxy ``box`` and/or clicks ``points`` [(x, y), ...] in
        pixels on the image (after its EXIF orientation) with ``point_labels`` (1 positive, 0 negative;
        default all 1). ``location`` (a located Region's) adds that location's seg prompt tokens and, when no
        ``box`` is given, its box. What SAM gets on each path: docs/point-prompts.md. The image session is
        reused: on a cached image this is one mask-decoder call."""
        return self._segment_on(self.encode_image(image), box, points, point_labels, location, phrase)

    def refine(self, image: Image.Image, expression: str, points, point_labels=None, region_index: int = 0,
               max_new_tokens: int = 32) -> Region:
        """Region ``region_index`` of ``ground(image, expression)`` with its mask decoded again from its
        location's seg prompt tokens and box plus the clicks (as in :meth:`segment`). The image session
        remembers each expression's locations, so only the first refine of an expression decodes text."""
        session = self.encode_image(image)
        check_point_prompts(points, point_labels, session.frame)  # before any decoding
        locations = session.grounded.get((expression, max_new_tokens))
        if locations is None:
            locations = [r.location for r in self._ground_on(session, expression, max_new_tokens)]
        if not 0 <= region_index < len(locations):
            raise ValueError(f"{expression!r} located {len(locations)} region(s) on this image; "
                             f"region_index {region_index} is not one of them")
        return self._segment_on(session, None, points, point_labels, locations[region_index], expression)

    @torch.no_grad()
    def _segment_on(self, session: ImageSession, box, points, point_labels, location: Location | None,
                    phrase: str) -> Region:
        frame = session.frame
        clicks, labels = check_point_prompts(points, point_labels, frame)
        if box is None and location is None and not clicks:
            raise ValueError("segment needs a box, a location or at least one point; got none and 0 points")
        if box is not None:
            box = _pixel_box(box)
            boxes_norm = boxes_pixels_to_norm([box], frame)
        elif location is not None:
            boxes_norm = location.box_norm.reshape(1, 4)
        else:
            boxes_norm = None
        points_norm = points_pixels_to_norm(clicks, frame)[None].to(self.device) if clicks else None
        labels_t = torch.tensor([labels], device=self.device) if clicks else None
        seg_prompts = None if location is None else location.prompt_tokens[None].to(self.device)
        low_res, ious = self.model.sam_masks(None if boxes_norm is None else boxes_norm.to(self.device),
                                             self.sam_embedding(session), seg_prompts, points_norm, labels_t)
        mask = mask_logits_to_masks(upscale_mask_logits(low_res), frame)[0].cpu().numpy()
        if boxes_norm is not None:
            region_box = clamp_box(boxes_norm_to_pixels(boxes_norm, frame)[0].tolist() if box is None else box, frame)
        else:
            region_box = _bounding_box(mask, clicks)
        return Region(box=region_box, mask=mask, score=float(ious[0]), phrase=phrase, location=location)

    def caption(self, image: Image.Image, max_new_tokens: int = 128, forced_answer: str | None = None) -> Caption:
        """A grounded caption: the text and a region per located phrase. ``forced_answer`` (markup such as
        ``"A dog <at> <boxes> on a sofa <at> <boxes> ."``) is run instead of generated (teacher forcing)."""
        opts = self._answer_options(max_new_tokens, forced_answer)
        return self._answer(self.run(image, prompts.grounded_caption(), [], opts))

    def ask(self, image: Image.Image, question: str, boxes=None, max_new_tokens: int = 128,
            forced_answer: str | None = None) -> Answer:
        """A question answered with the locations of the objects it mentions; ``boxes`` as [0], [1].
        ``forced_answer`` as in :meth:`caption`."""
        boxes = [list(map(float, b)) for b in (boxes or [])]
        turn = prompts.question_with_locations(question, len(boxes))
        return self._answer(self.run(image, turn, boxes, self._answer_options(max_new_tokens, forced_answer)))

    def _answer_options(self, max_new_tokens: int, forced_answer: str | None) -> DecodeOptions:
        if forced_answer is None:
            return DecodeOptions(max_new_tokens=max_new_tokens)
        forced = self.tokenizer.encode(forced_answer, add_bos=False) + [self.ids.eos]
        return DecodeOptions(max_new_tokens=len(forced), forced_token_ids=tuple(forced))

    def _answer(self, result: GenerationResult) -> Answer:
        regions = self.regions(result, phrases_for_locations(result.text))
        return Answer(text=clean_answer(result.text), regions=regions, raw_text=result.text)

    @staticmethod
    def regions(result: GenerationResult, phrases: list[str]) -> list[Region]:
        """Regions of a result (boxes clamped to the image, whose size the masks carry)."""
        frame = ImageFrame(width=result.masks.shape[2], height=result.masks.shape[1])
        seg_prompts = result.seg_prompts if result.seg_prompts is not None else [None] * len(result.boxes)
        return [Region(box=clamp_box(box.tolist(), frame), mask=mask.numpy().astype(bool), score=float(iou),
                       phrase=phrase, location=None if tokens is None else Location(box_norm, tokens))
                for box, mask, iou, phrase, box_norm, tokens in zip(result.boxes, result.masks, result.ious, phrases,
                                                                    result.boxes_norm, seg_prompts)]


def _pixel_box(box) -> list[float]:
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise ValueError(f"a box is 4 numbers x1, y1, x2, y2 in pixels; got {box!r}")
    return values


def _bounding_box(mask: np.ndarray, clicks) -> tuple[float, float, float, float]:
    """Pixel xyxy around a mask's pixels; around the clicks when the mask is empty."""
    ys, xs = np.nonzero(mask)
    if len(xs):
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    click_xs, click_ys = [x for x, _ in clicks], [y for _, y in clicks]
    return (min(click_xs), min(click_ys), max(click_xs), max(click_ys))


def _content_key(image: Image.Image) -> str:
    digest = hashlib.sha256(image.tobytes())
    digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
    return digest.hexdigest()
