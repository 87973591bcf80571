"""Device and dtype names, parsed in one place for the model CLI, the backend and the benchmarks."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
          "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16, "half": torch.float16}
DTYPE_CHOICES = "bf16, fp16, fp32 or auto"


def parse_dtype(dtype) -> torch.dtype:
    """A torch dtype from a torch dtype or a name (``bf16``, ``fp16``/``half``, ``fp32``/``float``...)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[str(dtype).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use {DTYPE_CHOICES}") from None


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; any other name as given."""
    if str(device).strip().lower() == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def resolve_dtype(dtype, device: str) -> torch.dtype:
    """``auto`` -> bf16 on CUDA, fp32 elsewhere; any other name through :func:`parse_dtype`."""
    if isinstance(dtype, str) and dtype.strip().lower() == "auto":
        return torch.bfloat16 if str(device).startswith("cuda") else torch.float32
    return parse_dtype(dtype)
