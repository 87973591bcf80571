"""Run a batch job: walk the folder, skip what the state says is done, label the rest (here or on Ray),
record every outcome in the state file as it comes, then stream the final JSON array."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from backend.batch.job import JobSpec
from backend.batch.progress import progress_bar
from backend.batch.source import WalkCounts, count_images, iter_image_keys
from backend.batch.state import StateFile, write_json_array

MAX_LISTED_FAILURES = 20


@dataclass
class RayOptions:
    address: str                     # "auto" or a cluster address
    cpus_per_replica: int = 1        # CPU-only replicas: one per this many CPUs
    replicas: int | None = None      # default: one per GPU, else CPUs // cpus_per_replica
    batch_size: int = 4              # images per map_batches call


@dataclass
class Summary:
    labelled: int = 0                # labelled by this run
    already_done: int = 0            # skipped: done by an earlier run
    failed: int = 0                  # bad images (or model failures) in this run, skipped
    ignored_files: int = 0           # files that are not images by their name
    tasks_written: int | None = None  # tasks in --out (this run's and earlier runs')
    failures: list[tuple[str, str]] = field(default_factory=list)
    unreadable_dirs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"labelled": self.labelled, "already_done": self.already_done, "failed": self.failed,
                "ignored_files": self.ignored_files, "tasks_written": self.tasks_written,
                "unreadable_dirs": self.unreadable_dirs[:MAX_LISTED_FAILURES]}


class Tracker:
    """Counts outcomes into the summary, appends them to the state, moves the bar, reports failures."""

    def __init__(self, state: StateFile, summary: Summary, bar):
        self.state, self.summary, self.bar = state, summary, bar

    def skipped(self) -> None:
        self.summary.already_done += 1
        self.bar.update(1)

    def record(self, record: dict, line: str | None = None) -> None:
        if line is not None:
            self.state.add_line(line)
        elif "task" in record:
            self.state.add_task(record["key"], record["task"])
        else:
            self.state.add_failure(record["key"], record["error"])
        if "task" in record:
            self.summary.labelled += 1
        else:
            self.summary.failed += 1
            if len(self.summary.failures) < MAX_LISTED_FAILURES:
                self.summary.failures.append((record["key"], record["error"]))
            _say(self.bar, f"batch: skipped {record['key']}: {record['error']}")
            self.bar.set_postfix_str(f"failed {self.summary.failed}")
        self.bar.update(1)


def _say(bar, text: str) -> None:
    writer = getattr(bar, "write", None)
    if writer is not None:
        writer(text, file=sys.stderr)
    else:
        print(text, file=sys.stderr, flush=True)


def pending_keys(spec: JobSpec, state: StateFile, tracker: Tracker, walk: WalkCounts) -> Iterator[str]:
    for key in iter_image_keys(spec.images_root, walk):
        if key in state.done:
            tracker.skipped()
        else:
            yield key


def run_job(spec: JobSpec, state_path: str | Path, out_path: str | Path | None, *, restart: bool = False,
            show_progress: bool = True, ray: RayOptions | None = None, model=None,
            labeler_factory: Callable | None = None) -> Summary:
    """Label every image of the job not already done; returns the summary. ``model`` (single process)
    and ``labeler_factory`` are for tests and embedding."""
    state = StateFile(state_path, spec.fingerprint()).open(restart=restart)
    summary, walk = Summary(), WalkCounts()
    bar = progress_bar(count_images(spec.images_root) if show_progress else None, enabled=show_progress)
    tracker = Tracker(state, summary, bar)
    try:
        keys = pending_keys(spec, state, tracker, walk)
        if ray is not None:
            from backend.batch.ray_runner import label_on_ray

            label_on_ray(spec, keys, ray, tracker.record)
        else:
            labeler = (labeler_factory or _default_labeler)(spec, model)
            for key in keys:
                tracker.record(labeler.label(key).record())
    finally:
        bar.close()
        state.close()
        summary.ignored_files, summary.unreadable_dirs = walk.ignored, walk.unreadable_dirs
    if out_path is not None:
        summary.tasks_written = write_json_array((task for _, task in state.iter_tasks()), out_path)
    return summary


def _default_labeler(spec: JobSpec, model):
    from backend.batch.labeler import ImageLabeler

    return ImageLabeler(spec, model)
