"""NExT-Chat inference: the public API (see README). One image is encoded once and answers many prompts."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager

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
    clamp_box,
    clip_pixel_values,
    mask_logits_to_masks,
    sam_pixel_values,
    to_rgb,
    upscale_mask_logits,
)
from .results import Answer, Caption, GenerationResult, Region, clean_answer, phrases_for_locations
from .session import ImageSession, additive_mask, copy_cache, suffix_prefill_mask
from .versioning import checkpoint_version


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
    def from_pretrained(cls, checkpoint, vision_tower=None, device="cpu", dtype=torch.float32, **kwargs) -> NextChat:
        return cls(load_components(checkpoint, vision_tower=vision_tower, device=device, dtype=dtype), **kwargs)

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
        return checkpoint_version(self.components.checkpoint_dir)

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
            pixels = sam_pixel_values(session.image)[None].to(self.device, self.dtype)
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

    @torch.no_grad()
    def run(self, image: Image.Image, turn: prompts.UserTurn, boxes, opts: DecodeOptions) -> GenerationResult:
        opts.validate()
        session = self.encode_image(image)
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
            lengths = [len(e) for e in chunk]
            width = max(lengths)
            padded = torch.stack([torch.cat([e.new_zeros((width - len(e), e.shape[1])), e]) for e in chunk])
            allowed = suffix_prefill_mask(session.prefix_len, lengths, self.device)
            positions = torch.stack([torch.arange(width, device=self.device) - (width - n) for n in lengths])
            positions = positions.clamp(min=0) + session.prefix_len
            cache = copy_cache(session.prefix_cache, self.model.config.llama, repeats=len(chunk))
            mask = additive_mask(allowed, padded.dtype)
            logits, _ = self.model.forward_embeds(padded, cache, attention_mask=mask, position_ids=positions)
            decoded = decode_greedy_batch(self.model, cache, logits[:, -1].float(), allowed[:, -1],
                                          positions[:, -1] + 1, self.ids, max_new_tokens, self._should_stop)
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
        """Embeddings of the prompt after the cached prefix, input boxes at ``<boxes>`` (spec §5, §7)."""
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
        hidden = torch.stack([h for d in decoded for h in d.at_hidden])
        boxes_norm, low_res, ious = self.model.decode_masks(hidden, self.sam_embedding(session))
        results, start = [], 0
        for d, n in zip(decoded, counts):
            part = slice(start, start + n)
            results.append(self.finish(session, d, (boxes_norm[part], low_res[part], ious[part])))
            start += n
        return results

    def finish(self, session: ImageSession, decoded: Decoded, decoded_masks=None) -> GenerationResult:
        frame = session.frame
        text = self.tokenizer.decode(decoded.token_ids)
        logits = torch.stack(decoded.logits).float().cpu() if decoded.logits else None
        if not decoded.at_hidden:
            return GenerationResult(decoded.token_ids, text, torch.zeros((0, 4)), torch.zeros((0, 4)),
                                    torch.zeros(0), torch.zeros((0, frame.height, frame.width), dtype=torch.bool),
                                    logits, None)
        if decoded_masks is None:
            decoded_masks = self.model.decode_masks(torch.stack(decoded.at_hidden), self.sam_embedding(session))
        boxes_norm, low_res, ious = decoded_masks
        boxes_norm = boxes_norm.float().cpu()
        masks = mask_logits_to_masks(upscale_mask_logits(low_res), frame).cpu()
        return GenerationResult(decoded.token_ids, text, boxes_norm, boxes_norm_to_pixels(boxes_norm, frame),
                                ious.float().cpu(), masks, logits, low_res.float().cpu())

    # ------------------------------------------------------------------ what users reach for
    def ground(self, image: Image.Image, expression: str, max_new_tokens: int = 32) -> list[Region]:
        """Regions for a referring expression (REC/RES): one per located box, mask and score."""
        result = self.run(image, prompts.referring(expression), [], DecodeOptions(max_new_tokens=max_new_tokens))
        return self.regions(result, [expression] * len(result.boxes))

    def ground_many(self, image: Image.Image, expressions: list[str], max_new_tokens: int = 32) -> list[list[Region]]:
        """``ground`` for each expression: the image encoded once, the prompts decoded as one batch."""
        if not expressions:
            return []
        results = self.run_batch(image, [prompts.referring(e) for e in expressions], max_new_tokens)
        return [self.regions(r, [e] * len(r.boxes)) for r, e in zip(results, expressions)]

    def describe(self, image: Image.Image, box, max_new_tokens: int = 64) -> str:
        """A description of one pixel-xyxy region (REG)."""
        result = self.run(image, prompts.region_description(), [list(map(float, box))],
                          DecodeOptions(max_new_tokens=max_new_tokens))
        return result.clean_text

    @torch.no_grad()
    def segment(self, image: Image.Image, box) -> Region:
        """A mask for a given pixel-xyxy box (a drawn region): SAM's decoder prompted by the box alone."""
        session = self.encode_image(image)
        norm = boxes_pixels_to_norm([list(map(float, box))], session.frame).to(self.device)
        low_res, ious = self.model.sam_masks(norm, self.sam_embedding(session))
        mask = mask_logits_to_masks(upscale_mask_logits(low_res), session.frame)[0].cpu().numpy()
        return Region(box=clamp_box(box, session.frame), mask=mask, score=float(ious[0]), phrase="")

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
        return [Region(box=clamp_box(box.tolist(), frame), mask=mask.numpy().astype(bool), score=float(iou),
                       phrase=phrase)
                for box, mask, iou, phrase in zip(result.boxes, result.masks, result.ious, phrases)]


def _content_key(image: Image.Image) -> str:
    digest = hashlib.sha256(image.tobytes())
    digest.update(f"{image.mode}:{image.width}x{image.height}".encode())
    return digest.hexdigest()
