"""Polling for something a live Label Studio or backend does in its own time."""

from __future__ import annotations

import time


def wait_until(predicate, timeout: float, what: str, log_tail=lambda: ""):
    """``predicate()``'s first truthy value, polled every 0.25 s; AssertionError (with ``log_tail()``) after
    ``timeout`` seconds."""
    give_up_at = time.monotonic() + timeout
    while time.monotonic() < give_up_at:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}\n{log_tail()}")
