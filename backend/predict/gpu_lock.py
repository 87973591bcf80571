"""The GPU lock: one model call at a time, an annotator's interactive call before a batch's next one."""

from __future__ import annotations

import threading
import time


class PriorityLock:
    """The GPU lock: one holder at a time; waiters marked ``urgent`` (an annotator's interactive call)
    go before ordinary ones (a batch of pre-annotations), which take the lock only while no urgent
    caller waits. A long batch releases it between model calls, so an annotator waits for one call,
    not for the batch."""

    def __init__(self):
        self._cond = threading.Condition()
        self._held = False
        self._urgent_waiting = 0

    def acquire(self, timeout: float, urgent: bool = False) -> bool:
        give_up_at = time.monotonic() + timeout
        with self._cond:
            if urgent:
                self._urgent_waiting += 1
            try:
                while self._held or (not urgent and self._urgent_waiting):
                    left = give_up_at - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
                self._held = True
                return True
            finally:
                if urgent:
                    self._urgent_waiting -= 1

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()
