"""The golden fixture cases (``fixtures/nextchat-tiny/cases``) and how far a run of ours lands from them.

Shared by tests/model/test_fixture_parity.py, which asserts every tolerance on the CPU, and the GPU
check (benchmarks/gpu), which reports the same deviations on CUDA in fp32 and bf16. Tolerances are the
fixture README's (fp32, CPU); a case run on another device or dtype is measured the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from .nextchat import NextChat
from .results import GenerationResult

# largest allowed |ours - release| per quantity (fp32, CPU)
TOLERANCES = {
    "step_logits": 1e-4,
    "boxes_norm": 1e-5,
    "boxes_pixels": 1e-3,
    "ious": 1e-4,
    "mask_logits_ds16": 1e-3,
    "mask_logits_sum": 1e-2,        # relative to the release's sum of |logits|
    "mask_logit_samples": 1e-3,
    "flipped_mask_pixels": 8,       # mask pixels that differ, without and with the IoU filter
}
MASK_IOU_FILTER = 0.3


def case_dirs(cases_root: Path) -> list[Path]:
    """Every case folder (one holding input.json) under ``cases_root``, sorted by name."""
    return sorted(p for p in Path(cases_root).iterdir() if (p / "input.json").is_file())


class Case:
    """One fixture case: what the caller gives (input.json), what the release returned (expected.json,
    tensors.safetensors) and the image."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.name = self.dir.name
        self.input = json.loads((self.dir / "input.json").read_text())
        self.expected = json.loads((self.dir / "expected.json").read_text())
        self.tensors = load_file(str(self.dir / "tensors.safetensors"))
        self.image = Image.open(self.dir / self.input["image"])

    def run(self, nc: NextChat) -> GenerationResult:
        decoding = self.input["decoding"]
        return nc.generate(self.image, self.input["user_text"], boxes=self.input["boxes_pixels_xyxy"] or None,
                           max_new_tokens=decoding["max_new_tokens"], num_beams=decoding["num_beams"],
                           forced_token_ids=self.input["forced_token_ids"], output_logits=True)

    @property
    def expected_ids(self) -> list[int]:
        return self.tensors["output_sequences"].tolist()[1:]  # index 0 is 4.31's bos placeholder

    @property
    def has_locations(self) -> bool:
        return "pred_locs_norm" in self.tensors


def loc_checkpoint_dir(fixture: Path, workdir: Path) -> Path:
    """A checkpoint folder of the base fixture files with the "loc"-edited state dict (symlinks)."""
    base_dir = Path(fixture) / "weights" / "nextchat"
    loc_dir = Path(workdir) / "loc_checkpoint"
    loc_dir.mkdir(parents=True, exist_ok=True)
    for file in base_dir.iterdir():
        if file.name != "model.safetensors" and not (loc_dir / file.name).exists():
            (loc_dir / file.name).symlink_to(file.resolve())
    if not (loc_dir / "model.safetensors").exists():
        (loc_dir / "model.safetensors").symlink_to((Path(fixture) / "weights" / "nextchat_loc_edited.safetensors")
                                                   .resolve())
    return loc_dir


def load_models(fixture: Path, workdir: Path, device="cpu", dtype=torch.float32) -> dict[str, NextChat]:
    """{"base": the fixture weights, "loc": the loc-edited weights}, as input.json's "weights" names them."""
    fixture = Path(fixture)
    tower = fixture / "weights" / "clip"
    paths = {"base": fixture / "weights" / "nextchat", "loc": loc_checkpoint_dir(fixture, workdir)}
    return {name: NextChat.from_pretrained(path, vision_tower=tower, device=device, dtype=dtype)
            for name, path in paths.items()}


def expected_step_logits(case: Case, nc: NextChat) -> torch.Tensor:
    """The release's per-step logits [steps, vocab]. Forced steps record 0 / -inf, not logits; the fixture
    README says to compare the hidden states there, so the recorded last-layer hidden states go through
    our lm_head (in fp32, on the CPU) instead."""
    if case.input["forced_token_ids"] is None:
        return case.tensors["step_logits"]
    weight = nc.model.lm_head.weight.detach().to("cpu", torch.float32)
    with torch.no_grad():
        return F.linear(case.tensors["step_last_hidden"].float(), weight)


def step_logits_deviation(case: Case, nc: NextChat, result: GenerationResult) -> float:
    """Largest |ours - release| over every step's logits (inf when the shapes differ)."""
    expected = expected_step_logits(case, nc)
    if result.logits is None or result.logits.shape != expected.shape:
        return float("inf")
    return _max_abs(result.logits, expected)


def location_deviations(case: Case, result: GenerationResult) -> dict:
    """Deviations of the boxes, IoU guesses and masks of a case that locates something."""
    t = case.tensors
    logits = result.mask_logits_1024()
    if result.boxes.shape != t["pred_locs_norm"].shape:
        return {"boxes_count_match": False}
    stats = case.expected["pred_masks_logits"]
    samples = []
    for key, value in case.expected["pred_masks_logits_samples"].items():
        k, y, x = (int(v) for v in key.split(","))
        samples.append(abs(float(logits[k, 0, y, x]) - value))
    no_filter = t["masks_pixels_no_iou_filter"].numpy().astype(bool)
    filtered = result.masks & (result.ious >= MASK_IOU_FILTER)[:, None, None]
    return {
        "boxes_count_match": True,
        "boxes_norm": _max_abs(result.boxes_norm, t["pred_locs_norm"]),
        "boxes_pixels": _max_abs(result.boxes, t["boxes_pixels"]),
        "ious": _max_abs(result.ious, t["iou_predictions"][:, 0]),
        "mask_logits_ds16": _max_abs(logits[:, :, ::16, ::16], t["pred_mask_logits_ds16"]),
        "mask_logits_sum": abs(float(logits.sum()) - stats["sum"]) / stats["abs_sum"],
        "mask_logit_samples": max(samples, default=0.0),
        "flipped_mask_pixels": int((result.masks.numpy() != no_filter).sum()),
        "flipped_mask_pixels_iou_filtered": int((filtered.numpy() != t["masks_pixels"].numpy().astype(bool)).sum()),
    }


def deviations(case: Case, nc: NextChat, result: GenerationResult) -> dict:
    """Everything the parity test checks about one run, as numbers (see :data:`TOLERANCES`)."""
    out = {"ids_match": result.token_ids == case.expected_ids, "text_match": result.text == case.expected["response"],
           "step_logits": step_logits_deviation(case, nc, result), "locates": case.has_locations}
    if case.has_locations:
        out.update(location_deviations(case, result))
    else:
        out["boxes_count_match"] = result.boxes.shape == (0, 4) and result.masks.shape[0] == 0
    return out


def within_tolerances(found: dict) -> dict[str, bool]:
    """Per quantity of :func:`deviations`, whether it meets the fp32 CPU tolerance."""
    verdict = {"ids_match": found["ids_match"], "text_match": found["text_match"],
               "boxes_count_match": found["boxes_count_match"]}
    for key, limit in TOLERANCES.items():
        if key == "flipped_mask_pixels":
            for name in ("flipped_mask_pixels", "flipped_mask_pixels_iou_filtered"):
                if name in found:
                    verdict[name] = found[name] <= limit
        elif key in found:
            verdict[key] = found[key] <= limit
    return verdict


def _max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
