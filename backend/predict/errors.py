"""The reasons a prediction is refused, each a one-line message; the HTTP layer maps them to statuses."""

from __future__ import annotations


class ConfigError(ValueError):
    """The label config cannot be used (bad XML, too many labels)."""


class InvalidContext(ValueError):
    """The interactive context is unusable (bad box, prompt too long, a [0] with no box drawn)."""


class ModelUnavailable(RuntimeError):
    """The model cannot serve now (loading, failed, out of GPU memory)."""


class TaskError(ValueError):
    """This task cannot be predicted (its data is unusable); the others go on."""


class OutOfTime(Exception):
    """The request's deadline passed while a task was in progress."""
