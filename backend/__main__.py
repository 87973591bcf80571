"""`python -m backend <command>`: serve (gunicorn), demo, export, check-stage3, batch, finetune.

    python -m backend serve --checkpoint PATH_OR_ID --vision-tower PATH_OR_ID \
        [--delta RUN/delta.safetensors] [--device cuda] [--dtype bf16] [--port 9090] [--host 0.0.0.0]
    python -m backend finetune DATA_DIR --checkpoint PATH_OR_ID --out RUN ...   (stage-3 fine-tuning)

Every flag has an environment equivalent (see backend/settings.py); flags win. Other commands are
imported only when asked for, so a missing module is one clear line, not a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from backend.settings import SettingsError, add_model_options, load_settings

# command -> "module:function"; the function gets the remaining argv and may return an exit code
SUBCOMMANDS = {
    "demo": "backend.dev.demo:main",
    "export": "backend.export.cli:main_export",
    "check-stage3": "backend.export.cli:main_check",
    "batch": "backend.batch:main",
    "finetune": "backend.train.cli:main",
}


def serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend serve",
        description="Serve the Label Studio ML backend under gunicorn (one worker, threads).",
    )
    add_model_options(parser)
    parser.add_argument("--host", help="address to bind (HOST; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (PORT; default 9090)")
    parser.add_argument("--threads", type=int, help="server threads (THREADS)")
    parser.add_argument("--log-level", help="LOG_LEVEL (default INFO)")
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def serve(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    try:
        settings = load_settings(
            checkpoint=args.checkpoint, vision_tower=args.vision_tower, delta=args.delta, device=args.device,
            dtype=args.dtype, host=args.host, port=args.port, threads=args.threads,
            log_level=args.log_level,
        )
    except SettingsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not settings.checkpoint:
        print("error: no checkpoint: pass --checkpoint or set NEXTCHAT_CHECKPOINT", file=sys.stderr)
        return 2
    problem = delta_problem(settings.delta)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    logging.getLogger("backend").info("settings: %s", settings.redacted())
    from backend.http.server import PortInUse, run_gunicorn

    try:
        run_gunicorn(settings)
    except PortInUse as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def delta_problem(path: str) -> str:
    """Why the operator's delta cannot be used, read before the server starts ("" when none is given or it
    reads as a stage-3 delta; whether it fits the checkpoint is checked when the model loads)."""
    if not path:
        return ""
    from model.stage3 import DeltaError, read_delta

    try:
        read_delta(path)
    except DeltaError as exc:
        return str(exc)
    return ""


def run_subcommand(name: str, argv: list[str]) -> int:
    module_name, function_name = SUBCOMMANDS[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        print(f"error: '{name}' is not available: cannot import {module_name} ({exc})", file=sys.stderr)
        return 2
    entry = getattr(module, function_name, None)
    if entry is None:
        print(f"error: '{name}' is not available: {module_name} has no {function_name}()", file=sys.stderr)
        return 2
    code = entry(argv)
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = ["serve", *SUBCOMMANDS]
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m backend {{{','.join(commands)}}} [options]\n{__doc__}")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return serve(rest)
    if command in SUBCOMMANDS:
        return run_subcommand(command, rest)
    print(f"error: unknown command {command!r}; choose one of {', '.join(commands)}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
