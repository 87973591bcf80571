"""`bash benchmarks/gpu_check.sh RESULTS_DIR [--dry-run] [options]` (or `python -m benchmarks.gpu ...`).

Phases, in order: parity (fixture cases, fp32 with TF32 off and bf16), model (the random 7b-shaped
locating model in memory: components, bandwidth, seconds per image), serve (`python -m backend serve` on
a written checkpoint: /predict, a drawn box, CUDA OOM). Writes RESULTS_DIR/gpu_check.json and
gpu_check.txt after every phase, prints the table last. Exit 0 when every phase ran and every check held
(speed targets are reported, not judged in the exit code), 1 otherwise, 2 for unusable arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from model.devices import parse_dtype
from model.random_checkpoint import SIZES

from .environment import describe, missing_modules
from .parity_check import find_fixture, run_parity
from .report import render, write_report
from .serve_check import REPO_ROOT, Budget, ServeOptions, run_serve_check

PHASES = ("parity", "model", "serve")
SERVE_TIMINGS = ("predict_8_labels", "predict_8_labels_brush", "interactive_box")
# the GPU run fits a short loan (under 8 minutes); the dry run is the same path, small and on the CPU
GPU_DEFAULTS = dict(size="7b", device="cuda", dtype="bf16", labels="1,8,16", repeats=3, warmup=1, calls=20,
                    copy_mib=4096, budget_s=450.0)
DRY_RUN_DEFAULTS = dict(size="small", device="cpu", dtype="fp32", labels="1,2", repeats=1, warmup=0, calls=3,
                        copy_mib=64, budget_s=900.0)
FIXTURE_CANDIDATES = (REPO_ROOT / ".gpu_fixtures" / "nextchat-tiny", REPO_ROOT.parent / "shared" / "fixtures" /
                      "nextchat-tiny", REPO_ROOT / "shared" / "fixtures" / "nextchat-tiny")
LOG_TAIL_LINES = 300
DESCRIPTION = "NExT-Chat on a GPU: fixture parity, the 7b-shaped model's times, the backend served."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bash benchmarks/gpu_check.sh", description=DESCRIPTION)
    parser.add_argument("results_dir", help="folder for gpu_check.json, gpu_check.txt, server_log_tail.txt")
    parser.add_argument("--dry-run", action="store_true", help="CPU, `small`, one repeat: the same path end to end")
    parser.add_argument("--fixtures", help="the nextchat-tiny fixture folder (default: .gpu_fixtures/nextchat-tiny, "
                                           "then ../shared/fixtures/nextchat-tiny)")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"subset of {','.join(PHASES)}")
    parser.add_argument("--size", choices=sorted(SIZES), help="random model size (7b; dry run: small)")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (cuda; dry run: cpu)")
    parser.add_argument("--dtype", help="model dtype for the model and serve phases (bf16; dry run: fp32)")
    parser.add_argument("--parity-dtypes", default="fp32,bf16", help="dtypes of the parity runs (fp32 is judged)")
    parser.add_argument("--labels", help="label counts per image (1,8,16; dry run: 1,2)")
    parser.add_argument("--repeats", type=int, help="timed runs per measure, median reported (3; dry run: 1)")
    parser.add_argument("--warmup", type=int, help="untimed runs before each mode measure (1; dry run: 0)")
    parser.add_argument("--calls", type=int, help="timed HTTP calls per measure (20; dry run: 3)")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--copy-mib", type=int, help="MiB per device-to-device copy (4096; dry run: 64)")
    parser.add_argument("--oom-margin-mib", type=int, default=512, help="GPU memory left free in the OOM check")
    parser.add_argument("--budget-s", type=float, help="soft time limit: later phases and calls are skipped past it")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads for this process")
    parser.add_argument("--workdir", help="scratch folder for checkpoints (default: a temporary folder)")
    parser.add_argument("--keep-workdir", action="store_true", help="keep the written checkpoint")
    return parser


def parse_args(argv) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in (DRY_RUN_DEFAULTS if args.dry_run else GPU_DEFAULTS).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.phase_list = [p.strip() for p in args.phases.split(",") if p.strip()]
    if not args.phase_list or any(p not in PHASES for p in args.phase_list):
        parser.error(f"--phases {args.phases!r}: choose from {','.join(PHASES)}")
    try:
        args.label_counts = sorted({int(n) for n in args.labels.split(",") if n.strip()})
        args.torch_dtype = parse_dtype(args.dtype)
        args.parity_dtype_list = [p.strip() for p in args.parity_dtypes.split(",") if p.strip()]
        for name in args.parity_dtype_list:
            parse_dtype(name)
        torch.device(args.device)
    except (ValueError, RuntimeError) as exc:
        parser.error(str(exc).splitlines()[0])
    if not args.label_counts or args.label_counts[0] < 1 or min(args.repeats, args.calls) < 1 or args.warmup < 0:
        parser.error("--labels, --repeats and --calls need positive numbers (--warmup >= 0)")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("CUDA is not available here; on a machine without a GPU use --dry-run")
    args.fixture = None
    if "parity" in args.phase_list:
        candidates = [Path(args.fixtures)] if args.fixtures else list(FIXTURE_CANDIDATES)
        args.fixture = find_fixture(candidates)
        if args.fixture is None:
            parser.error(f"no nextchat-tiny fixture (cases/, weights/) in {', '.join(map(str, candidates))}; "
                         "pass --fixtures DIR")
    args.results = Path(args.results_dir)
    try:
        args.results.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        parser.error(f"cannot create {args.results}: {exc.strerror}")
    return args


def shown_path(path: Path) -> str:
    """``path`` relative to the repository (the report names no folder of the machine it ran on)."""
    return os.path.relpath(Path(path).resolve(), REPO_ROOT)


def run_phase(name: str, args, workdir: Path, budget: Budget) -> dict:
    if name == "parity":
        report = run_parity(args.fixture, args.device, args.parity_dtype_list, workdir)
        return {**report, "fixture": shown_path(args.fixture)}
    if name == "model":
        from .model_check import run_model_check  # imports the benchmarks (transformers) only when asked

        return run_model_check(args.size, args.device, args.torch_dtype, args.label_counts, args.repeats,
                               args.warmup, args.max_new_tokens, args.copy_mib * 2**20)
    options = ServeOptions(size=args.size, device=args.device, dtype=args.dtype, calls=args.calls, workdir=workdir,
                           log_path=workdir / "server.log", oom_margin_mib=args.oom_margin_mib)
    return run_serve_check(options, budget)


def attempt(name: str, args, workdir: Path, budget: Budget, report: dict) -> None:
    missing = missing_modules(name)
    began = time.monotonic()
    print(f"[gpu check] {name}: starting ({budget.remaining():.0f} s of the budget left)", flush=True)
    if missing:
        report["phases"][name] = {"skipped": "missing modules: " + "; ".join(missing)}
    elif budget.remaining() < 30:
        report["phases"][name] = {"skipped": "out of the time budget (--budget-s)"}
    else:
        try:
            report["phases"][name] = run_phase(name, args, workdir, budget)
        except Exception as exc:  # noqa: BLE001 - recorded; the next phase still runs
            first = str(exc).splitlines()[0][:300] if str(exc) else ""
            report["phases"][name] = {"error": f"{type(exc).__name__}: {first}"}
            report.setdefault("tracebacks", {})[name] = traceback.format_exc()
    report["phase_seconds"][name] = round(time.monotonic() - began, 2)
    outcome = report["phases"][name]
    state = outcome.get("error") or outcome.get("skipped") or "done"
    print(f"[gpu check] {name}: {state} in {report['phase_seconds'][name]} s", flush=True)


def problems(report: dict) -> list[str]:
    """What did not run or did not hold (speed targets are not among them)."""
    found = []
    for name, phase in report["phases"].items():
        if "error" in phase or "skipped" in phase:
            found.append(f"{name} {'failed' if 'error' in phase else 'skipped'}")
    parity = report["phases"].get("parity", {})
    if parity.get("fp32_passed") is False:
        bad = [c for c, f in parity["runs"]["fp32"]["cases"].items() if not f.get("passed")]
        found.append(f"fp32 parity outside tolerances: {', '.join(bad)}")
    serve = report["phases"].get("serve", {})
    for key in ("ready_s", "oom", *SERVE_TIMINGS):
        part = serve.get(key)
        if isinstance(part, dict) and "error" in part:
            found.append(f"serve {key} failed")
    if isinstance(serve.get("oom"), dict) and serve["oom"].get("passed") is False:
        found.append("CUDA OOM not answered 503-then-200")
    for key in SERVE_TIMINGS:
        part = serve.get(key)
        if isinstance(part, dict) and "statuses" in part and set(part["statuses"]) - {"200"}:
            found.append(f"serve {key}: statuses {part['statuses']}")
    return found


def copy_log_tail(workdir: Path, results: Path) -> None:
    log = workdir / "server.log"
    if log.is_file():
        lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        (results / "server_log_tail.txt").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    began, budget = time.monotonic(), Budget(args.budget_s)
    report = {"check": {"argv": sys.argv[1:] if argv is None else list(argv), "dry_run": args.dry_run,
                        "size": args.size, "device": args.device, "dtype": args.dtype, "labels": args.label_counts,
                        "repeats": args.repeats, "warmup": args.warmup, "calls": args.calls,
                        "budget_s": args.budget_s, "fixture": shown_path(args.fixture) if args.fixture else None},
              "environment": describe(args.device), "phases": {}, "phase_seconds": {}}
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nextchat_gpu_check_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        for name in args.phase_list:
            attempt(name, args, workdir, budget, report)
            write_report(report, args.results)
    finally:
        copy_log_tail(workdir, args.results)
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    found = problems(report)
    code = 1 if found else 0
    report["check"].update(wall_s=round(time.monotonic() - began, 1), exit_code=code,
                           summary="; ".join(found) if found else "every phase ran and every check held")
    json_path, table_path = write_report(report, args.results)
    print(f"[gpu check] wrote {json_path} and {table_path}\n", flush=True)
    print(render(report), flush=True)
    return code
