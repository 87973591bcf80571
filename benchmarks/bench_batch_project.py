"""Benchmark `batch --from-project`: images per second through the whole job, for 1 and 2 workers.

    python -m benchmarks.bench_batch_project [--size small] [--images 12] [--labels car,dog]
        [--shapes boxes|boxes,polygons] [--workers 1,2] [--out benchmarks/results/cpu_small_batch_project.json]

The job is the real one (backend.batch.project_job: images fetched through backend.images.ImageLoader
on its threads, decoded, predicted by TaskLabeler, every outcome in the state file, predictions
collected in bulk chunks); only Label Studio is replaced by an in-memory project (its API costs a few
milliseconds per page of tasks and per bulk import of 50 predictions, nothing next to the model on
CPU). Tasks point at distinct 640x480 drawn scenes (PNG) as local files. Workers: `1` is the single-process job (torch
limited to --threads), `N>1` runs N Ray replicas of --threads CPUs each. Model load time is not counted.
Not a test: nothing asserts a time.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

from backend.batch.job import default_label_config


class LocalProject:
    """The project calls the job makes (backend.batch.ls_project.LabelStudioProject), in memory."""

    def __init__(self, tasks: dict[int, dict]):
        self.project_id, self.all_tasks, self.imported = 1, tasks, []

    def task_ids(self, view=None, filters=None):
        return sorted(self.all_tasks)

    def tasks(self, ids):
        for task_id in ids:
            yield {"id": task_id, "data": self.all_tasks[task_id]}

    def import_predictions(self, predictions):
        self.imported += predictions


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_batch_project",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--checkpoint", help="use this checkpoint folder (tower in ./vision_tower)")
    parser.add_argument("--images", type=int, default=12, help="tasks in the project (default 12)")
    parser.add_argument("--labels", default="car,dog", help="labels of the config (default car,dog)")
    parser.add_argument("--shapes", default="boxes", choices=["boxes", "boxes,polygons"],
                        help="RectangleLabels only (default), or RectangleLabels + PolygonLabels from the masks")
    parser.add_argument("--workers", default="1,2", help="worker counts to run (default 1,2)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    parser.add_argument("--out", help="also write the JSON here")
    return parser.parse_args(argv)


def write_images(folder: Path, count: int) -> list[Path]:
    """Distinct 640x480 street-like scenes (flat shapes: masks and polygons like a real photo's, unlike
    noise, whose speckled masks give megabytes of polygon points); distinct, so no image cache hit."""
    from backend.dev.demo import draw_sample_image

    return [draw_sample_image(folder / f"task{index}.png", (640, 480), seed=index) for index in range(count)]


def time_job(workers: int, args, settings, label_config: str, project: LocalProject, state: Path) -> dict:
    from backend.batch.project_job import ProjectJob, run_project_job
    from backend.images import ImageLoader
    from backend.predict.config import parse_config

    if workers == 1:
        import torch

        from backend.batch.task_labeler import TaskLabeler

        torch.set_num_threads(args.threads)
        labeler = TaskLabeler(label_config, settings, {})
        labels, version, close = (lambda tasks: (labeler.label(t) for t in tasks)), labeler.model_version, None
    else:
        from backend.batch.ray_runner import connect
        from backend.batch.ray_tasks import RayTaskPool
        from backend.batch.runner import RayOptions

        connect("auto")
        pool = RayTaskPool(label_config, settings, {}, RayOptions("auto", args.threads, workers))
        labels, version, close = pool.labels, pool.model_version, pool.close
    job = ProjectJob(project, label_config, parse_config(label_config, settings), ImageLoader(settings))
    started = time.perf_counter()
    summary = run_project_job(job, labels, version, state, restart=True, show_progress=False)
    seconds = time.perf_counter() - started
    if close is not None:
        close()
    return {"workers": workers, "threads_per_worker": args.threads, "images": summary.labelled,
            "failed": summary.failed, "seconds": round(seconds, 2),
            "images_per_s": round(summary.labelled / seconds, 3)}


def main(argv=None) -> int:
    args = parse_args(argv)
    from backend.settings import load_settings
    from model.random_checkpoint import write_random_checkpoint

    with tempfile.TemporaryDirectory(prefix="bench-batch-") as folder:
        root = Path(folder)
        checkpoint = Path(args.checkpoint) if args.checkpoint else write_random_checkpoint(args.size, root / "ckpt")
        images = write_images(root / "files", args.images)
        settings = load_settings({}, checkpoint=str(checkpoint), vision_tower=str(checkpoint / "vision_tower"),
                                 device="cpu", dtype="fp32", local_files_document_root=str(root / "files"))
        label_config = default_label_config([label.strip() for label in args.labels.split(",") if label.strip()])
        if args.shapes == "boxes":
            label_config = re.sub(r"\s*<PolygonLabels.*</PolygonLabels>", "", label_config, flags=re.S)
        tasks = {index + 1: {"image": f"/data/local-files/?d={path.name}"} for index, path in enumerate(images)}
        runs = []
        for workers in [int(n) for n in args.workers.split(",") if n.strip()]:
            run = time_job(workers, args, settings, label_config, LocalProject(tasks), root / f"state-{workers}.jsonl")
            runs.append(run)
            print(f"{workers} worker(s) x {args.threads} thread(s): {run['images']} images in {run['seconds']} s "
                  f"= {run['images_per_s']} images/s", file=sys.stderr, flush=True)
    base = runs[0]["images_per_s"] if runs else 0
    report = {"size": args.size, "images": args.images, "labels": args.labels, "shapes": args.shapes,
              "image_size": [640, 480],
              "python": platform.python_version(), "machine": platform.machine(), "runs": runs,
              "speedup_vs_first": [round(run["images_per_s"] / base, 2) if base else None for run in runs]}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
