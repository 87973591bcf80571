"""The training queue: one job at a time, requests coalesced, a cool-down between runs.

Label Studio waits for the answer to "Start Training" (and, with "train on annotation submission", the
annotator's save waits for it), so :meth:`TrainingJobs.request` only records the request and answers
with a job id. A background thread runs the jobs:

- nothing waiting: the request creates a job, started as soon as the cool-down allows;
- a job already waiting (for the running job or the cool-down): the request joins it (coalesced), so
  any number of requests during a run give exactly one rerun after it;
- after a job that trained (published, kept or failed), the next one starts no sooner than
  ``cooldown_s`` later; a skipped job (too few new records) imposes no cool-down.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from model.reasons import one_line

log = logging.getLogger("backend.train")

FINAL_STATES = ("published", "kept", "skipped", "failed")


@dataclass
class JobRecord:
    """One training job as /train/status shows it (the runner fills in the progress and the outcome)."""

    id: str
    requested_at: float                # unix time of the first request
    project: int | None = None         # the Label Studio project that asked first
    state: str = "queued"              # queued -> running -> published | kept | skipped | failed
    phase: str = ""                    # while running: settling, features, training, publishing
    requests: int = 1                  # requests coalesced into this job
    started_at: float | None = None
    finished_at: float | None = None
    step: int = 0
    total_steps: int = 0
    records: int = 0                   # records in the snapshot it trained on
    new_records: int = 0               # of them, not in the last run that trained
    metrics: dict | None = None        # {"split", "before": {...}, "after": {...}}
    delta_id: str = ""
    model_version: str = ""            # the version it published
    reason: str = ""                   # one line: why it was skipped, kept or failed

    def as_dict(self) -> dict:
        return asdict(self)


def new_job_id() -> str:
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


@dataclass
class _Queue:
    running: JobRecord | None = None
    waiting: JobRecord | None = None
    history: deque = field(default_factory=lambda: deque(maxlen=20))
    counts: Counter = field(default_factory=Counter)
    last_trained_at: float | None = None   # monotonic time the last job that trained finished


class TrainingJobs:
    """Runs ``run(job)`` for one job at a time on a background thread; ``run`` sets the job's final state
    (an exception fails the job with its one-line reason)."""

    def __init__(self, run: Callable[[JobRecord], None], cooldown_s: float):
        self._run = run
        self.cooldown_s = cooldown_s
        self._cond = threading.Condition()
        self._queue = _Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._worker, name="stage3-training", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ request side (never blocks)
    def request(self, project: int | None = None) -> dict:
        """Record a training request; the reply names the job that will serve it."""
        with self._cond:
            queue = self._queue
            queue.counts["requests"] += 1
            if queue.waiting is not None:
                queue.waiting.requests += 1
                queue.counts["coalesced"] += 1
                status, job = "coalesced", queue.waiting
            else:
                job = queue.waiting = JobRecord(new_job_id(), time.time(), project)
                status = "queued"
                self._cond.notify_all()
            reply = {"job": job.id, "status": status, "starts_in_s": round(self._cooldown_left(), 1)}
            if queue.running is not None:
                reply["after"] = queue.running.id
        log.info("training requested (project %s): job %s %s", project, job.id, status)
        return reply

    def snapshot(self) -> dict:
        with self._cond:
            queue = self._queue
            return {
                "state": "running" if queue.running else ("waiting" if queue.waiting else "idle"),
                "running": queue.running.as_dict() if queue.running else None,
                "waiting": queue.waiting.as_dict() if queue.waiting else None,
                "starts_in_s": round(self._cooldown_left(), 1) if queue.waiting else None,
                "history": [job.as_dict() for job in reversed(queue.history)],
                "counts": dict(queue.counts),
            }

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job runs or waits; False on timeout."""
        give_up_at = time.monotonic() + timeout
        with self._cond:
            while self._queue.running is not None or self._queue.waiting is not None:
                left = give_up_at - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ worker side
    def _cooldown_left(self) -> float:
        last = self._queue.last_trained_at
        return 0.0 if last is None else max(0.0, last + self.cooldown_s - time.monotonic())

    def _next_job(self) -> JobRecord | None:
        with self._cond:
            while not self._closed and (self._queue.waiting is None or self._cooldown_left() > 0):
                self._cond.wait(self._cooldown_left() or None)
            if self._closed:
                return None
            job, self._queue.waiting = self._queue.waiting, None
            job.state, job.started_at = "running", time.time()
            self._queue.running = job
            self._queue.counts["started"] += 1
            return job

    def _worker(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._run(job)
                if job.state not in FINAL_STATES:
                    job.state, job.reason = "failed", "the run ended without an outcome"
            except Exception as exc:  # noqa: BLE001 - a failed job is reported, the queue goes on
                log.exception("training job %s failed", job.id)
                job.state, job.reason = "failed", one_line(exc)
            finally:
                self._finish(job)

    def _finish(self, job: JobRecord) -> None:
        with self._cond:
            job.finished_at, job.phase = time.time(), ""
            queue = self._queue
            queue.running = None
            queue.history.append(job)
            queue.counts[job.state] += 1
            if job.state != "skipped":
                queue.last_trained_at = time.monotonic()
            self._cond.notify_all()
        outcome = job.reason or job.model_version
        log.info("training job %s %s%s", job.id, job.state, f": {outcome}" if outcome else "")
