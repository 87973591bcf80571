"""A progress bar with images/s and the time left: tqdm when installed, else a line on stderr every few
seconds."""

from __future__ import annotations

import sys
import time


class _Counter:
    def __init__(self, total: int | None, initial: int, interval_s: float = 5.0):
        self.total, self.count, self.initial, self.interval_s = total, initial, initial, interval_s
        self.started = self.last = time.monotonic()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.count += n
        now = time.monotonic()
        if now - self.last >= self.interval_s or (self.total is not None and self.count >= self.total):
            self.last = now
            rate = (self.count - self.initial) / max(now - self.started, 1e-9)
            of_total = f"/{self.total}" if self.total is not None else ""
            eta = ""
            if self.total is not None and rate > 0:
                eta = f", ETA {time.strftime('%H:%M:%S', time.gmtime((self.total - self.count) / rate))}"
            print(f"batch: {self.count}{of_total} images ({rate:.2f} img/s{eta}) {self.postfix}", file=sys.stderr,
                  flush=True)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def close(self) -> None:
        pass


class _Silent(_Counter):
    def update(self, n: int = 1) -> None:
        self.count += n


def progress_bar(total: int | None, initial: int = 0, enabled: bool = True):
    """An object with update(n), set_postfix_str(text) and close()."""
    if not enabled:
        return _Silent(total, initial)
    try:
        from tqdm import tqdm
    except ImportError:
        return _Counter(total, initial)
    return tqdm(total=total, initial=initial, unit="img", desc="batch", file=sys.stderr, dynamic_ncols=True)
