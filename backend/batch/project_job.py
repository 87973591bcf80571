"""`batch --from-project`: predict a Label Studio project's tasks and write the predictions back in bulk.

The job lists the ids of the tasks to predict (backend.batch.ls_project), skips those the state file
says are done, fetches the rest a page at a time, downloads their images on a few threads ahead of
the model (backend.images.ImageLoader: uploads, local files, presigned cloud URLs, the SSRF rules), and
labels them here or on Ray actors (backend.batch.task_labeler). Every outcome goes to the state file as
it comes (one JSON line; a bad task is reported, recorded and retried by the next run), and finished
predictions are sent to Label Studio in bulk every UPLOAD_CHUNK tasks; ``<state>.uploaded-<project>.json``
counts what was sent, so a rerun first sends what an interrupted run had finished but not sent.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from backend.batch.ls_project import LabelStudioProject
from backend.batch.progress import progress_bar
from backend.batch.runner import Summary, Tracker
from backend.batch.state import StateFile
from backend.batch.task_labeler import FetchedTask
from backend.images import ImageError
from backend.studio.labeling import LabelingConfig

UPLOAD_CHUNK = 50
FETCH_THREADS = 4
FETCH_AHEAD = 16


@dataclass
class ProjectSummary(Summary):
    uploaded: int = 0                # predictions sent to Label Studio by this run
    model_version: str = ""

    def as_dict(self) -> dict:
        return {**super().as_dict(), "uploaded": self.uploaded, "model_version": self.model_version}


def job_fingerprint(project_id: int, label_config: str, model_version: str, view, filters) -> str:
    """What must match for a rerun to reuse finished tasks (the version covers model, config, settings)."""
    fields = {"project": project_id, "label_config": label_config, "model_version": model_version, "view": view,
              "filters": filters}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def fetch_task(loader, config: LabelingConfig, task: dict) -> FetchedTask:
    """The task with the bytes of every Image its config fills, or the reason they could not be had."""
    data = task.get("data")
    if not isinstance(data, dict):
        return FetchedTask(task["id"], {}, error="the task is gone from the project")
    fetched = FetchedTask(task["id"], data)
    for target in config.targets:
        value = data.get(target.value_key)
        if value is None:
            fetched.error = f"task data has no {target.value_key!r} for Image {target.name!r}"
            return fetched
        try:
            fetched.images[target.name] = loader.load_bytes(value, task["id"])
        except ImageError as exc:
            fetched.error = f"bad image: {exc}"
            return fetched
    return fetched


def prefetched(tasks: Iterable[dict], fetch: Callable[[dict], FetchedTask], threads: int = FETCH_THREADS,
               ahead: int = FETCH_AHEAD) -> Iterator[FetchedTask]:
    """`fetch(task)` for each task on `threads` threads, at most `ahead` in flight, results in order."""
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch") as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.submit(fetch, task))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Uploader:
    """Finished predictions -> Label Studio in bulk; the marker counts the task records already sent."""

    def __init__(self, project: LabelStudioProject, state: StateFile, chunk: int | None = None):
        self.project, self.state, self.chunk = project, state, chunk or UPLOAD_CHUNK
        self.marker = state.path.with_name(f"{state.path.name}.uploaded-{project.project_id}.json")
        self.buffer: list[dict] = []
        self.sent = 0

    def already_sent(self) -> int:
        try:
            return int(json.loads(self.marker.read_text())["records"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def send_leftovers(self) -> None:
        """Send what an earlier run recorded but did not send (records after the marker)."""
        start = self.already_sent()
        for index, (_, task) in enumerate(self.state.iter_tasks()):
            if index >= start:
                self.add(task)

    def add(self, task: dict) -> None:
        self.buffer.append(dict(task["prediction"], task=task["id"]))
        if len(self.buffer) >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        self.project.import_predictions(self.buffer)
        done = self.already_sent() + len(self.buffer)
        self.marker.write_text(json.dumps({"project": self.project.project_id, "records": done}))
        self.sent += len(self.buffer)
        self.buffer = []

    def reset(self) -> None:
        self.marker.unlink(missing_ok=True)


@dataclass
class ProjectJob:
    project: LabelStudioProject
    label_config: str
    config: LabelingConfig
    loader: object                    # backend.images.ImageLoader (with the project client's token)
    view: int | None = None
    filters: dict | None = None


def run_project_job(job: ProjectJob, labels: Callable[[Iterable[FetchedTask]], Iterator[dict]], model_version: str,
                    state_path: str | Path, *, restart: bool = False, show_progress: bool = True) -> ProjectSummary:
    """Predict every task of the job not done yet; `labels(fetched tasks)` yields their state records (here
    or on Ray). Returns the summary; ProjectError / ModelUnavailable stop the job (a rerun resumes)."""
    fingerprint = job_fingerprint(job.project.project_id, job.label_config, model_version, job.view, job.filters)
    state = StateFile(state_path, fingerprint).open(restart=restart)
    uploader = Uploader(job.project, state)
    summary = ProjectSummary(model_version=model_version)
    if restart:
        uploader.reset()
    bar = None
    try:
        uploader.send_leftovers()
        ids = job.project.task_ids(job.view, job.filters)
        pending = [task_id for task_id in ids if str(task_id) not in state.done]
        summary.already_done = len(ids) - len(pending)
        bar = progress_bar(len(ids), initial=summary.already_done, enabled=show_progress)
        tracker = Tracker(state, summary, bar)
        fetched = prefetched(job.project.tasks(pending), lambda task: fetch_task(job.loader, job.config, task))
        for record in labels(fetched):
            tracker.record(record)
            if "task" in record:
                uploader.add(record["task"])
        uploader.flush()
    finally:
        summary.uploaded = uploader.sent
        if bar is not None:
            bar.close()
        state.close()
    return summary
