"""(c) The backend served on the device, through its CLI and HTTP interface only: a random checkpoint
written with `python -m model.random_checkpoint`, `python -m backend serve` started on it, then
* CUDA out of memory: this process fills the card's free memory but a margin and asks for 16 labels on
  a new image (expected: 503), frees it, and asks again (expected: 200 with regions);
* /predict for one task with 8 labels, a new image per call (p50 / p95), boxes only and boxes + brush masks;
* an interactive drawn-box call (the smart tool) on one image: the first (cold) call, then p50 / p95.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests
import torch

from benchmarks.common import expressions

from . import payloads

REPO_ROOT = Path(__file__).resolve().parents[2]
MIB = 2**20


@dataclass(frozen=True)
class ServeOptions:
    size: str
    device: str
    dtype: str            # fp32 / bf16, for the checkpoint on disk and the server
    calls: int            # timed calls per measure
    workdir: Path
    log_path: Path
    oom_margin_mib: int = 512
    ready_timeout_s: float = 300.0
    request_timeout_s: float = 120.0


class Budget:
    """Seconds left for the whole check (loops stop early rather than run past it)."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_checkpoint(options: ServeOptions, budget: Budget) -> tuple[Path, dict]:
    """The random locating checkpoint on disk, through its CLI."""
    out = options.workdir / f"random_{options.size}"
    command = [sys.executable, "-m", "model.random_checkpoint", "--size", options.size, "--out", str(out),
               "--dtype", options.dtype, "--device", options.device]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=max(budget.remaining(), 1))
    if done.returncode != 0:
        raise RuntimeError(f"writing the checkpoint failed: {last_line(done.stderr)}")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    return out, {"seconds": round(time.perf_counter() - began, 2), "GiB_on_disk": round(size / 2**30, 3)}


def last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


class BackendServer:
    """`python -m backend serve` in its own process group, its log in ``options.log_path``."""

    def __init__(self, checkpoint: Path, options: ServeOptions):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "backend", "serve", "--checkpoint", str(checkpoint),
                   "--vision-tower", str(checkpoint / "vision_tower"), "--device", options.device,
                   "--dtype", options.dtype, "--host", "127.0.0.1", "--port", str(self.port)]
        env = dict(os.environ, MAX_LABELS="64", REQUEST_DEADLINE_S=str(int(options.request_timeout_s)))
        self.log = open(options.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.http = requests.Session()

    def wait_ready(self, timeout_s: float) -> float:
        """Seconds until /health says the model is ready; RuntimeError if the server exits or times out."""
        began = time.perf_counter()
        while time.perf_counter() - began < timeout_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode} before it was ready")
            try:
                if self.http.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return round(time.perf_counter() - began, 2)
            except requests.RequestException:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the server was not ready after {timeout_s:.0f} s")

    def predict(self, body: dict, timeout_s: float) -> dict:
        """One timed /predict: {"status", "seconds", "counts" or "error"}."""
        began = time.perf_counter()
        reply = self.http.post(f"{self.url}/predict", json=body, timeout=timeout_s)
        out = {"status": reply.status_code, "seconds": round(time.perf_counter() - began, 4)}
        try:
            data = reply.json()
        except ValueError:
            return {**out, "error": reply.text[:200]}
        if reply.status_code == 200:
            out["counts"] = payloads.result_counts(data)
        else:
            out["error"] = str(data.get("error", data))[:200]
        return out

    def health(self) -> dict:
        reply = self.http.get(f"{self.url}/health", timeout=10)
        return {"status": reply.status_code, **reply.json()}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        self.http.close()
        self.log.close()


def fill_gpu_memory(device: str, margin_bytes: int) -> tuple[torch.Tensor, dict]:
    """One plain allocation of the device's free memory but ``margin_bytes`` (in this process)."""
    free, total = torch.cuda.mem_get_info(torch.device(device))
    size = free - margin_bytes
    while True:
        try:
            return torch.empty(size, dtype=torch.uint8, device=device), {
                "free_before_GiB": round(free / 2**30, 2), "total_GiB": round(total / 2**30, 2),
                "filled_GiB": round(size / 2**30, 2), "margin_MiB": margin_bytes // MIB}
        except torch.cuda.OutOfMemoryError:
            size -= 256 * MIB  # the free figure moved meanwhile
            if size <= 0:
                raise


def oom_check(server: BackendServer, options: ServeOptions) -> dict:
    """503 while the card is full, then 200 once it is not (runs first: nothing cached in the server yet)."""
    config = payloads.label_config(expressions(16))
    body = payloads.predict_body(1, payloads.image_data_uri(seed=7), config)
    if torch.device(options.device).type != "cuda":
        answer = server.predict(body, options.request_timeout_s)
        return {"skipped": "not a CUDA device: nothing to fill", "request": answer, "passed": None}
    filler, filled = fill_gpu_memory(options.device, options.oom_margin_mib * MIB)
    try:
        while_full = server.predict(body, options.request_timeout_s)
    finally:
        del filler
        torch.cuda.empty_cache()
    after = server.predict(body, options.request_timeout_s)
    health = server.health()
    passed = (while_full["status"] == 503 and after["status"] == 200
              and after.get("counts", {}).get("shapes", {}).get("rectanglelabels", 0) > 0)
    return {"filled": filled, "while_full": while_full, "after_freeing": after, "health_after": health,
            "passed": passed}


def percentiles(seconds: list[float]) -> dict:
    if not seconds:
        return {"calls": 0}
    ordered = sorted(seconds)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    return {"calls": len(ordered), "p50_s": round(statistics.median(ordered), 4), "p95_s": round(p95, 4),
            "min_s": round(ordered[0], 4), "max_s": round(ordered[-1], 4)}


def timed_calls(server: BackendServer, bodies: list[dict], options: ServeOptions, budget: Budget) -> dict:
    seconds, statuses, counts = [], {}, None
    for body in bodies:
        if budget.remaining() < 20:
            break
        answer = server.predict(body, options.request_timeout_s)
        statuses[str(answer["status"])] = statuses.get(str(answer["status"]), 0) + 1
        if answer["status"] == 200:
            seconds.append(answer["seconds"])
            counts = answer["counts"]
    return {**percentiles(seconds), "asked": len(bodies), "statuses": statuses, "last_counts": counts}


def time_predict(server: BackendServer, options: ServeOptions, budget: Budget, brush: bool) -> dict:
    """One task with 8 labels per call, a new image each time (CLIP, SAM's encoder and the prefix included)."""
    config = payloads.label_config(expressions(8), brush=brush)
    first_seed = 1000 if brush else 100
    warmup = server.predict(payloads.predict_body(1, payloads.image_data_uri(seed=first_seed - 1), config),
                            options.request_timeout_s)
    bodies = [payloads.predict_body(i, payloads.image_data_uri(seed=first_seed + i), config)
              for i in range(options.calls)]
    return {"labels": 8, "brush_masks": brush, "warmup": warmup, **timed_calls(server, bodies, options, budget)}


def time_interactive(server: BackendServer, options: ServeOptions, budget: Budget) -> dict:
    """A box drawn with the smart tool on one image, segmented: the first call, then one box per call."""
    config = payloads.label_config(expressions(8), brush=True)
    image = payloads.image_data_uri(seed=300)

    def body(i: int) -> dict:
        x, y = 5.0 + (i * 7) % 50, 5.0 + (i * 11) % 40
        return payloads.predict_body(1, image, config, payloads.drawn_box_context("person", x, y, 30.0, 40.0))

    first = server.predict(body(0), options.request_timeout_s)
    return {"first_call": first, **timed_calls(server, [body(i) for i in range(1, options.calls + 1)], options,
                                              budget)}


def log_summary(path: Path) -> dict:
    """ERROR lines and tracebacks in the server's log, and the last ERROR line."""
    lines = path.read_text(errors="replace").splitlines() if path.is_file() else []
    errors = [line for line in lines if " ERROR " in line]
    return {"error_lines": len(errors), "tracebacks": sum("Traceback" in line for line in lines),
            "last_error": errors[-1][-300:] if errors else None}


def guarded(report: dict, key: str, work) -> None:
    """report[key] = work(), or {"error": one line} (the next measure still runs)."""
    try:
        report[key] = work()
    except Exception as exc:  # noqa: BLE001 - recorded in the report, never a traceback
        report[key] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def run_serve_check(options: ServeOptions, budget: Budget) -> dict:
    checkpoint, written = write_checkpoint(options, budget)
    report: dict = {"checkpoint": written}
    server = BackendServer(checkpoint, options)
    try:
        guarded(report, "ready_s", lambda: server.wait_ready(min(options.ready_timeout_s,
                                                                  max(budget.remaining() - 30, 10))))
        if not isinstance(report["ready_s"], dict):
            guarded(report, "oom", lambda: oom_check(server, options))
            guarded(report, "predict_8_labels", lambda: time_predict(server, options, budget, brush=False))
            guarded(report, "predict_8_labels_brush", lambda: time_predict(server, options, budget, brush=True))
            guarded(report, "interactive_box", lambda: time_interactive(server, options, budget))
    finally:
        server.stop()
        report["server_exit_code"] = server.process.returncode
        report["server_log"] = log_summary(options.log_path)
    return report
