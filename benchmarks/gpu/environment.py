"""What the check ran on: package versions, the device, and whether every module it needs imports."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import platform
import subprocess
from importlib import metadata

import torch

DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "huggingface-hub", "safetensors", "sentencepiece",
                 "segment-anything", "pillow", "numpy", "flask", "werkzeug", "gunicorn", "pycocotools",
                 "opencv-python-headless", "label-studio-sdk", "requests")
# phase -> modules it imports (the backend's through its own process; listed so a missing one is one line)
NEEDED_MODULES = {
    "parity": ("torch", "transformers", "segment_anything", "sentencepiece", "safetensors", "PIL"),
    "model": ("torch", "transformers", "segment_anything", "sentencepiece", "safetensors", "PIL"),
    "serve": ("flask", "werkzeug", "gunicorn", "pycocotools", "cv2", "requests", "label_studio_sdk.converter.brush",
              "segment_anything", "transformers"),
}


def versions() -> dict[str, str | None]:
    found = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def missing_modules(phase: str) -> list[str]:
    """'module (reason)' for each module of ``phase`` that does not import here."""
    missing = []
    for module in NEEDED_MODULES[phase]:
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
            missing.append(f"{module} ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})")
    return missing


def device_info(device: str) -> dict:
    dev = torch.device(device)
    info = {"device": str(dev), "torch_cuda": torch.version.cuda}
    if dev.type != "cuda":
        info["name"] = platform.processor() or platform.machine()
        info["cpu_threads"] = torch.get_num_threads()
        return info
    props = torch.cuda.get_device_properties(dev)
    info.update(name=props.name, capability=f"{props.major}.{props.minor}", multiprocessors=props.multi_processor_count,
                total_memory_GiB=round(props.total_memory / 2**30, 2))
    info["nvidia_smi"] = nvidia_smi()
    return info


def nvidia_smi() -> str | None:
    """One read-only query line (name, driver, memory, clocks), or None where the tool is absent."""
    query = "name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=20)
        if done.returncode == 0:
            return done.stdout.strip()
    return None


def matmul_flags() -> dict:
    return {"float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32}


@contextlib.contextmanager
def tf32_off():
    """fp32 matmuls and convolutions in full fp32 (no TF32) inside the block; the flags are restored after."""
    precision = torch.get_float32_matmul_precision()
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.backends.cudnn.allow_tf32 = cudnn_tf32


def describe(device: str) -> dict:
    return {"date_utc": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(), "machine": platform.machine(), "versions": versions(),
            "device": device_info(device), "matmul_flags": matmul_flags()}
