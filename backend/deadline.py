"""A request's deadline on the monotonic clock (shared by HTTP, image fetching and model calls)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Deadline:
    """A point on the monotonic clock after which a request must stop starting new work."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at
