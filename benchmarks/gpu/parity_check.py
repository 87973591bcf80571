"""(a) The fixture parity cases on the check's device: fp32 with TF32 off against the CPU tests'
tolerances, and bf16 (reported, not judged: bf16 cannot meet fp32 tolerances)."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from model.devices import parse_dtype
from model.parity import Case, case_dirs, deviations, load_models, within_tolerances

from .environment import matmul_flags, tf32_off

# what the table shows per case and dtype: the largest box and mask-logit deviations
BOX_KEYS = ("boxes_norm", "boxes_pixels")
MASK_KEYS = ("mask_logits_ds16", "mask_logit_samples")


def find_fixture(candidates: list[Path]) -> Path | None:
    """The first folder that holds a fixture (cases/ and weights/nextchat)."""
    for folder in candidates:
        if (folder / "cases").is_dir() and (folder / "weights" / "nextchat").is_dir():
            return folder
    return None


def run_case(case: Case, models: dict, judged: bool) -> dict:
    nc = models[case.input["weights"]]
    try:
        result = case.run(nc)
    except Exception as exc:  # noqa: BLE001 - one failing case is reported, the others still run
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    found = deviations(case, nc, result)
    verdict = within_tolerances(found)
    found["max_box_deviation"] = max((found[k] for k in BOX_KEYS if k in found), default=None)
    found["max_mask_logit_deviation"] = max((found[k] for k in MASK_KEYS if k in found), default=None)
    found["outside_fp32_tolerances"] = sorted(k for k, ok in verdict.items() if not ok)
    if judged:
        found["passed"] = not found["outside_fp32_tolerances"]
    return found


def run_parity(fixture: Path, device: str, dtypes: list[str], workdir: Path) -> dict:
    """{"runs": {dtype: {"cases": {name: deviations}, ...}}, "fp32_passed": bool}. fp32 runs with TF32 off."""
    cases = [Case(folder) for folder in case_dirs(fixture / "cases")]
    report: dict = {"fixture": str(fixture), "device": device, "cases": [c.name for c in cases], "runs": {}}
    for name in dtypes:
        dtype = parse_dtype(name)
        judged = dtype == torch.float32
        started = time.perf_counter()
        with tf32_off():
            models = load_models(fixture, workdir / f"parity_{name}", device=device, dtype=dtype)
            flags = matmul_flags()
            per_case = {case.name: run_case(case, models, judged) for case in cases}
        del models
        run = {"dtype": name, "judged_against_fp32_tolerances": judged, "matmul_flags": flags,
               "seconds": round(time.perf_counter() - started, 2), "cases": per_case,
               "ids_match_all": all(c.get("ids_match", False) for c in per_case.values())}
        if judged:
            run["passed"] = all(c.get("passed", False) for c in per_case.values())
        report["runs"][name] = run
    if "fp32" in report["runs"]:
        report["fp32_passed"] = report["runs"]["fp32"]["passed"]
    return report
