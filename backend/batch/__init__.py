"""Batch pre-labelling of image folders into Label Studio tasks (``python -m backend batch``); see cli.py."""

from backend.batch.cli import main

__all__ = ["main"]
