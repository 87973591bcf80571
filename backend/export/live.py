"""Live mode: Label Studio's webhooks keep a stage-3 directory current.

`LiveExporter(out_dir).submit(payload)` only puts the payload on a queue and returns (Label Studio
waits at most 1 s for /webhook). One background thread applies the events in order, then rebuilds
res.jsonl once per batch of queued events. Events:

  ANNOTATION_CREATED, ANNOTATION_UPDATED   store the annotation's entry (replacing an older one)
  ANNOTATIONS_CREATED                      the same for each annotation in the list
  ANNOTATIONS_DELETED                      forget those annotations (and ignore late events for them)
  TASKS_DELETED                            forget every annotation of those tasks

Idempotent by annotation id: replaying an event gives the same files; an event older than the
stored entry (by updated_at) is ignored. All writes are atomic (see store.py), and at start the
directory is cleaned of temp files and res.jsonl is rebuilt from the entries, so a process killed at
any point leaves a valid directory and loses nothing that was stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime

from backend.export.annotations import ExportOptions
from backend.export.build import ExportContext, LabelConfigInfo, entry_or_skip
from backend.export.sources import LoaderFetcher
from backend.export.store import Stage3Store

log = logging.getLogger(__name__)

LIVE_EVENTS = (
    "ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED",
    "TASKS_DELETED",
)
MAX_BATCH = 200
_STOP = object()


def parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def is_stale(stored: dict | None, annotation: dict) -> bool:
    """True when the stored entry comes from a newer version of the annotation than this event."""
    if stored is None:
        return False
    stored_time, event_time = parse_time(stored.get("updated_at")), parse_time(annotation.get("updated_at"))
    if stored_time is None or event_time is None:
        return False
    try:
        return event_time < stored_time
    except TypeError:  # naive vs aware timestamps: cannot compare, take the event
        return False


def ids_of(items) -> list[int]:
    ids = []
    for item in items if isinstance(items, list) else []:
        raw = item.get("id") if isinstance(item, dict) else item
        if isinstance(raw, int) or (isinstance(raw, str) and raw.isdigit()):
            ids.append(int(raw))
    return ids


class LiveExporter:
    """Applies Label Studio webhook payloads to a stage-3 directory, off the request thread."""

    def __init__(self, out_dir, images_loader=None, options: ExportOptions | None = None):
        self.store = Stage3Store(out_dir)
        self.fetch_image = LoaderFetcher(images_loader)
        self.options = options or ExportOptions()
        self._queue: queue.Queue = queue.Queue()
        self._pending = 1  # the start-up rebuild
        self._idle = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="stage3-live-export", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ request side (never blocks)
    def submit(self, payload: dict) -> None:
        if not isinstance(payload, dict) or payload.get("action") not in LIVE_EVENTS:
            return
        with self._idle:
            self._pending += 1
        self._queue.put(payload)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every submitted event is applied and res.jsonl rebuilt; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self, timeout: float | None = 30.0) -> None:
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    # ------------------------------------------------------------------ worker side
    def _run(self) -> None:
        try:
            self.store.remove_temp_files()
            self.store.rebuild()
        except Exception:  # noqa: BLE001 - keep serving events even if the start-up rebuild fails
            log.exception("stage-3 live export: start-up rebuild of %s failed", self.store.root)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            events = [event for event in batch if event is not _STOP]
            self._apply_batch(events)
            if len(events) != len(batch):
                return

    def _apply_batch(self, events: list[dict]) -> None:
        try:
            for event in events:
                try:
                    self.apply(event)
                except Exception:  # noqa: BLE001 - one bad event must not stop the exporter
                    log.exception("stage-3 live export: %s failed", event.get("action"))
            if events:
                self.store.rebuild()
        except Exception:  # noqa: BLE001
            log.exception("stage-3 live export: rebuild of %s failed", self.store.root)
        finally:
            with self._idle:
                self._pending -= len(events)
                self._idle.notify_all()

    def apply(self, payload: dict) -> None:
        """Apply one event to the stored entries (res.jsonl is rebuilt by the caller)."""
        action = payload.get("action")
        if action in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED"):
            self._store_annotations(payload)
        elif action == "ANNOTATIONS_DELETED":
            for annotation_id in ids_of(payload.get("annotations")):
                self.store.delete_entry(annotation_id)
        elif action == "TASKS_DELETED":
            task_ids = set(ids_of(payload.get("tasks")))
            for entry in self.store.all_entries():
                if entry.get("task_id") in task_ids:
                    self.store.delete_entry(entry["annotation_id"])

    def _store_annotations(self, payload: dict) -> None:
        annotations = payload.get("annotation")
        annotations = annotations if isinstance(annotations, list) else [annotations]
        tasks = payload.get("task")
        tasks = tasks if isinstance(tasks, list) else [tasks]
        task_by_id = {task.get("id"): task for task in tasks if isinstance(task, dict)}
        project = payload.get("project") if isinstance(payload.get("project"), dict) else {}
        context = ExportContext(self.store, self.fetch_image, self.options,
                                LabelConfigInfo.from_xml(project.get("label_config")))
        for annotation in annotations:
            if not isinstance(annotation, dict) or not ids_of([annotation]):
                continue
            annotation_id = int(annotation["id"])
            if self.store.is_deleted(annotation_id):
                continue
            if is_stale(self.store.read_entry(annotation_id), annotation):
                log.info("stage-3 live export: ignoring an older version of annotation %s", annotation_id)
                continue
            task = task_by_id.get(annotation.get("task")) or (tasks[0] if len(tasks) == 1 else None)
            if not isinstance(task, dict):
                log.warning("stage-3 live export: annotation %s came without its task", annotation_id)
                continue
            self.store.put_entry(entry_or_skip(context, task, annotation))
