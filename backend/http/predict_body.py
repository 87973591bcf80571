"""/predict's body: read as far as the limits allow, never refused for what Label Studio embeds.

Label Studio sends every selected task in one request, each with its annotations, predictions and
drafts. The backend needs only each task's ``id`` and ``data`` (and, for an interactive call of one
task, its drafts, annotations and predictions: the regions a click may fall on). So:

* the raw body is streamed into a spool (memory up to SPOOL_MEMORY_BYTES, then a temporary file) and
  may be as large as MAX_REQUEST_BYTES, the hard ceiling (413 above it: the one case a body is refused);
* small bodies are parsed whole; bigger ones are scanned (backend.http.json_scan) and only the parts
  above are parsed, so embedded annotations never become Python objects;
* tasks are read in order while their count stays within MAX_TASKS_PER_REQUEST and the bytes of their
  ``data`` within MAX_TASK_DATA_BYTES; the tasks after that are *left out*: they get an entry without
  "result" (Label Studio stores nothing for it, and asks for them again on the next "Retrieve
  predictions", since they still lack a prediction of the current version).
"""

from __future__ import annotations

import json
import logging
import mmap
import tempfile
from dataclasses import dataclass

from backend.http.body import TOO_LARGE, BadRequest, body_chunks, json_object
from backend.http.json_scan import ScanError, scan_predict_body
from backend.settings import MIB, Settings

log = logging.getLogger("backend.http")

SPOOL_MEMORY_BYTES = 8 * MIB     # a body up to this stays in memory
PARSE_WHOLE_BYTES = 4 * MIB      # a body up to this is parsed with json at once; bigger ones are scanned
TASK_FIELDS = ("id", "data")     # what is kept of each task
# kept too when the request has one task (an interactive call): the regions a click may fall on
SINGLE_TASK_FIELDS = ("drafts", "annotations", "predictions")


@dataclass
class PredictBody:
    tasks: list[dict]               # the tasks read, in order: id, data (SINGLE_TASK_FIELDS for a single task)
    total: int                      # tasks in the request; tasks[len(tasks):] were left out
    left_out_reason: str = ""
    label_config: object = None
    project: object = None
    params: object = None

    @property
    def left_out(self) -> int:
        return self.total - len(self.tasks)


class _Budget:
    """Counts tasks and data bytes; says why the next task cannot be read."""

    def __init__(self, settings: Settings):
        self.max_tasks, self.max_bytes = settings.max_tasks_per_request, settings.max_task_data_bytes
        self.tasks = self.bytes = 0

    def refuse(self, size: int) -> str:
        if self.tasks >= self.max_tasks:
            return f"MAX_TASKS_PER_REQUEST={self.max_tasks}"
        if self.bytes + size > self.max_bytes:
            return f"MAX_TASK_DATA_BYTES={self.max_bytes}"
        self.tasks += 1
        self.bytes += size
        return ""


def _spool(cap: int):
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
    for chunk in body_chunks(cap, chunk_bytes=1024 * 1024):
        spool.write(chunk)
    return spool


def _kept(task: dict, single: bool) -> dict:
    kept = {key: task[key] for key in TASK_FIELDS if key in task}
    if single:
        kept.update({key: task[key] for key in SINGLE_TASK_FIELDS if key in task})
    return kept


def _check_task(index: int, task) -> None:
    if not isinstance(task, dict):
        raise BadRequest(f"tasks[{index}] must be an object")
    if not isinstance(task.get("data"), dict):
        raise BadRequest(f"tasks[{index}] has no 'data' object")


def _parse_whole(raw: bytes, settings: Settings) -> PredictBody:
    body = json_object(raw)
    tasks = _task_list(body.get("tasks"))
    for index, task in enumerate(tasks):
        _check_task(index, task)
    result = PredictBody([], len(tasks), label_config=body.get("label_config"), project=body.get("project"),
                         params=body.get("params"))
    budget = _Budget(settings)
    for task in tasks:
        kept = _kept(task, len(tasks) == 1)
        size = sum(len(json.dumps(value)) for key, value in kept.items() if key != "id")
        result.left_out_reason = budget.refuse(size)
        if result.left_out_reason:
            break
        result.tasks.append(kept)
    return result


def _task_list(tasks) -> list:
    if not isinstance(tasks, list):
        raise BadRequest("'tasks' must be a list of tasks")
    if not tasks:
        raise BadRequest("'tasks' is empty")
    return tasks


def _loads(buffer, span: tuple[int, int], what: str):
    try:
        return json.loads(bytes(buffer[span[0]:span[1]]))
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"malformed JSON in {what}: {exc}") from None


def _parse_scanned(buffer, settings: Settings) -> PredictBody:
    try:
        spans = scan_predict_body(buffer)
    except ScanError as exc:
        raise BadRequest(str(exc)) from None
    top = {key: _loads(buffer, span, repr(key)) for key, span in spans.top.items()
           if key in ("label_config", "project", "params")}
    tasks = _task_list(spans.tasks)
    for index, task in enumerate(tasks):
        data = task.values.get("data")
        if data is None or buffer[data[0]:data[0] + 1] != b"{":
            raise BadRequest(f"tasks[{index}] has no 'data' object")
    result = PredictBody([], len(tasks), **top)
    budget = _Budget(settings)
    single = len(tasks) == 1
    for index, task in enumerate(tasks):
        wanted = [key for key in (*TASK_FIELDS, *(SINGLE_TASK_FIELDS if single else ())) if key in task.values]
        size = sum(task.values[key][1] - task.values[key][0] for key in wanted if key != "id")
        result.left_out_reason = budget.refuse(size)
        if result.left_out_reason:
            break
        result.tasks.append({key: _loads(buffer, task.values[key], f"tasks[{index}].{key}") for key in wanted})
    return result


def read_predict_body(settings: Settings) -> PredictBody:
    """The /predict body (module doc); BadRequest (400, or 413 past MAX_REQUEST_BYTES) when unusable."""
    with _spool(settings.max_request_bytes) as spool:
        size = spool.tell()
        if size == 0:
            raise BadRequest("empty request body; expected a JSON object")
        spool.seek(0)
        if size <= PARSE_WHOLE_BYTES:
            body = _parse_whole(spool.read(), settings)
        else:
            spool.fileno()  # a body this big is on disk: map it instead of reading it into memory
            with mmap.mmap(spool.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                body = _parse_scanned(mapped, settings)
    if body.left_out:
        log.warning("/predict: read %d of %d tasks (%s); %d left without a result (Label Studio asks for them "
                    "again on the next Retrieve predictions; for big projects use `python -m backend batch "
                    "--from-project`)", len(body.tasks), body.total, body.left_out_reason, body.left_out)
    return body


__all__ = ["PredictBody", "read_predict_body", "TOO_LARGE"]
