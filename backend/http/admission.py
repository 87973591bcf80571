"""Admission control for HTTP requests: a bounded number of running requests and a bounded queue.

`Admission` lets `max_concurrency` requests run and up to `max_queue` wait. A request that finds the
queue full is refused at once (`Overloaded`, HTTP 429); one that waits longer than `queue_timeout_s`
(or past its own deadline) is refused too (HTTP 503). Both carry Retry-After. /health never enters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from backend.deadline import Deadline


class Overloaded(Exception):
    """The request was not admitted; `status` is the HTTP code to answer with."""

    def __init__(self, reason: str, status: int, retry_after_s: int):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s


class Admission:
    """Counts running and waiting requests; thread-safe."""

    def __init__(self, max_concurrency: int, max_queue: int, queue_timeout_s: float, retry_after_s: int):
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.retry_after_s = retry_after_s
        self._cond = threading.Condition()
        self.running = 0
        self.waiting = 0
        self.rejected = 0

    def _refuse(self, reason: str, status: int) -> Overloaded:
        self.rejected += 1
        return Overloaded(reason, status, self.retry_after_s)

    def _wait_for_slot(self, deadline: Deadline) -> None:
        """Called with the condition held; returns with a slot taken or raises Overloaded."""
        if self.waiting >= self.max_queue:
            raise self._refuse(
                f"server busy: {self.running} running and {self.waiting} waiting", 429
            )
        give_up_at = time.monotonic() + min(self.queue_timeout_s, deadline.remaining())
        self.waiting += 1
        try:
            while self.running >= self.max_concurrency:
                left = give_up_at - time.monotonic()
                if left <= 0:
                    raise self._refuse("server busy: waited too long in the queue", 503)
                self._cond.wait(left)
        finally:
            self.waiting -= 1
        self.running += 1

    @contextlib.contextmanager
    def slot(self, deadline: Deadline) -> Iterator[None]:
        with self._cond:
            if self.running < self.max_concurrency and self.waiting == 0:
                self.running += 1
            else:
                self._wait_for_slot(deadline)
        try:
            yield
        finally:
            with self._cond:
                self.running -= 1
                self._cond.notify()

    def snapshot(self) -> dict:
        with self._cond:
            return {"running": self.running, "waiting": self.waiting, "rejected": self.rejected}
