"""`python -m backend batch`: pre-label a folder of images, or the tasks of a Label Studio project.

    python -m backend batch --images DIR --labels a,b,c --out tasks.json \
        [--label-config FILE] [--document-root ROOT | --absolute-paths] \
        --checkpoint PATH --vision-tower PATH [--delta RUN/delta.safetensors] [--device cuda] [--dtype bf16] \
        [--project ID] [--ray auto|ADDRESS [--ray-cpus-per-replica N]] [--restart] [--no-progress]
    python -m backend batch --from-project ID [--filter JSON | --view VIEW] [--select-version] \
        --checkpoint PATH --vision-tower PATH [--ray ...]          (backend/batch/project_cli.py)

Exit codes: 0 done (bad images are reported and counted, not fatal), 2 bad input, 3 the model or
Label Studio failed (rerun to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backend.batch.job import JobError, JobSpec
from backend.batch.project import UploadError, upload_to_project
from backend.batch.runner import RayOptions, run_job
from backend.batch.state import StateError
from backend.predict.errors import ModelUnavailable
from backend.settings import SettingsError, add_model_options, load_settings

EPILOG = """\
Images: every file under --images (recursively, hidden ones skipped) whose name ends in .jpg .jpeg .png
.webp .bmp .tif .tiff .gif. Other files are ignored; an unreadable or corrupt image is reported and skipped.

Task image references (data.image): with --document-root (default: $LOCAL_FILES_DOCUMENT_ROOT), a Label
Studio local-files URL "/data/local-files/?d=<path relative to the root>" (the project needs a Local
Files storage covering it: --project adds one for the images folder when it has none); otherwise the
image's absolute file path, which Label Studio cannot show, so --project refuses to run without one.

Output: --out is a Label Studio import file (a JSON array of {"data": {...}, "predictions": [...]}); when
the config was made from --labels it is written beside it as <out>.label_config.xml (paste it into the
project's Labeling Interface).
Progress is kept in --state (default <out>.state.jsonl, one line per finished image): a rerun skips
the images already done; --restart starts over. The labels' regions use the backend's settings
(SCORE_THRESHOLD, MASK_IOU_THRESHOLD, POLYGON_TOLERANCE, DESCRIBE_REGIONS, MAX_IMAGE_*), which the flags
below override. --project ID writes the predictions into that project (LABEL_STUDIO_URL,
LABEL_STUDIO_API_KEY): on its task for the same image if there is one, else as a new task.

--from-project ID predicts the tasks of an existing project instead (uploads, local files, cloud
storage; all of them, a Data Manager view with --view, or --filter '{"conjunction": "and", "items":
[...]}'), writes the predictions into it in bulk, and prints the model version to choose in its
Settings -> Annotation -> Prelabeling (--select-version sets it). Resumable with --state.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m backend batch", description=__doc__.splitlines()[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", help="folder of images (walked recursively)")
    parser.add_argument("--from-project", type=int, metavar="ID", help="predict this Label Studio project's tasks")
    parser.add_argument("--filter", help="with --from-project: Data Manager filters (JSON) choosing the tasks")
    parser.add_argument("--view", type=int, help="with --from-project: the Data Manager view (tab) id whose tasks")
    parser.add_argument("--select-version", action="store_true", help="with --from-project: make the version "
                        "the project's prelabeling version")
    parser.add_argument("--page-size", type=int, default=100, help="with --from-project: tasks per API page")
    parser.add_argument("--labels", default="", help="comma-separated labels to pre-annotate; without "
                        "--label-config a config with a RectangleLabels 'box' and a PolygonLabels 'polygon' is made")
    parser.add_argument("--label-config", help="Label Studio labeling config XML file (one Image)")
    parser.add_argument("--out", help="the Label Studio import JSON to write")
    parser.add_argument("--state", help="progress file (default <out>.state.jsonl)")
    parser.add_argument("--project", type=int, help="also write the predictions into this project")
    parser.add_argument("--document-root", help="reference images as /data/local-files/?d=... under this root")
    parser.add_argument("--absolute-paths", action="store_true", help="reference images by absolute path "
                        "even if LOCAL_FILES_DOCUMENT_ROOT is set")
    add_model_options(parser)
    parser.add_argument("--score-threshold", type=float, help="SCORE_THRESHOLD")
    parser.add_argument("--mask-iou-threshold", type=float, help="MASK_IOU_THRESHOLD")
    parser.add_argument("--polygon-tolerance", type=float, help="POLYGON_TOLERANCE")
    parser.add_argument("--ray", metavar="auto|ADDRESS", help="run on Ray: 'auto' (a running cluster, else a "
                        "local one) or a cluster address; images and checkpoint must be at the same paths there")
    parser.add_argument("--ray-cpus-per-replica", type=int, default=1, help="CPUs per model replica when the "
                        "cluster has no GPU (default 1; with GPUs: one replica per GPU)")
    parser.add_argument("--ray-replicas", type=int, help="number of model replicas (default: as many as fit)")
    parser.add_argument("--restart", action="store_true", help="ignore earlier progress and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def make_spec(args, env=None) -> JobSpec:
    settings = load_settings(env, checkpoint=args.checkpoint, vision_tower=args.vision_tower, delta=args.delta,
                             device=args.device,
                             dtype=args.dtype, score_threshold=args.score_threshold,
                             mask_iou_threshold=args.mask_iou_threshold, polygon_tolerance=args.polygon_tolerance)
    if not settings.checkpoint:
        raise JobError("no checkpoint: pass --checkpoint or set NEXTCHAT_CHECKPOINT")
    label_config = None
    if args.label_config:
        try:
            label_config = Path(args.label_config).read_text(encoding="utf-8")
        except OSError as exc:
            raise JobError(f"--label-config {args.label_config}: {exc.strerror}") from None
    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    document_root = None if args.absolute_paths else (args.document_root or settings.local_files_document_root)
    return JobSpec.create(args.images, label_config, labels, settings, document_root or None)


def state_path_for(args) -> Path:
    if args.state:
        return Path(args.state)
    if args.out:
        return Path(args.out + ".state.jsonl")
    return Path(f"nextchat-batch-project-{args.project}.state.jsonl")


def main(argv: list[str] | None = None, env=None) -> int:
    args = build_parser().parse_args(argv)
    if args.from_project is not None:
        from backend.batch.project_cli import main_from_project

        return main_from_project(args, env)
    if not args.images:
        print("error: give --images DIR (a folder) or --from-project ID (a Label Studio project)", file=sys.stderr)
        return 2
    if not args.out and args.project is None:
        print("error: give --out FILE and/or --project ID", file=sys.stderr)
        return 2
    try:
        spec = make_spec(args, env)
        settings = load_settings(env)
        if args.project is not None and spec.document_root is None:
            raise JobError("--project needs --document-root ROOT (Label Studio's LOCAL_FILES_DOCUMENT_ROOT, holding "
                           "--images): tasks holding absolute file paths cannot be shown by Label Studio")
        ray = RayOptions(args.ray, args.ray_cpus_per_replica, args.ray_replicas) if args.ray else None
        summary = run_job(spec, state_path_for(args), args.out, restart=args.restart,
                          show_progress=not args.no_progress, ray=ray)
        report = summary.as_dict()
        if args.out and not args.label_config:
            config_path = Path(args.out + ".label_config.xml")
            config_path.write_text(spec.label_config, encoding="utf-8")
            report["label_config"] = str(config_path)
        if args.project is not None:
            report["project"] = upload_to_project(args.project, spec.target().value_key, state_path_for(args),
                                                  spec.fingerprint(), settings.label_studio_url,
                                                  settings.label_studio_api_key, images_root=spec.images_root)
    except (JobError, StateError, SettingsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ModelUnavailable, UploadError) as exc:
        print(f"error: {exc}; rerun to resume", file=sys.stderr)
        return 3
    for key, reason in summary.failures:
        print(f"failed: {key}: {reason}", file=sys.stderr)
    print(json.dumps({"summary": report}), file=sys.stdout)
    return 0
