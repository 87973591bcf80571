"""One line of text from an exception: what every refusal, log line and skipped item says (model CLI
and backend alike)."""

from __future__ import annotations


def one_line(exc: BaseException | str, limit: int = 300) -> str:
    """The exception's message folded onto one line (its type name when it has none), at most `limit` chars."""
    text = exc if isinstance(exc, str) else str(exc)
    folded = " ".join(text.split())
    if not folded and isinstance(exc, BaseException):
        folded = type(exc).__name__
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
