"""Walk an image folder lazily (os.scandir, one directory open at a time): never a list of the folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from backend.images.decode import IMAGE_SUFFIXES


@dataclass
class WalkCounts:
    """Files seen that are not images by their name (not counted as failures) and unreadable folders."""

    ignored: int = 0
    unreadable_dirs: list[str] = field(default_factory=list)


def iter_image_keys(root: str, counts: WalkCounts | None = None) -> Iterator[str]:
    """Image paths relative to ``root`` with ``/`` separators, found lazily, depth first.

    Hidden files and folders (leading dot) are skipped; links to folders are not followed (no cycles);
    files whose suffix is not an image suffix are counted in ``counts.ignored``."""
    counts = counts if counts is not None else WalkCounts()
    pending = [""]
    while pending:
        relative_dir = pending.pop()
        try:
            scanner = os.scandir(os.path.join(root, relative_dir) if relative_dir else root)
        except OSError:
            counts.unreadable_dirs.append(relative_dir or ".")
            continue
        subdirs = []
        with scanner:
            for entry in scanner:
                if entry.name.startswith("."):
                    continue
                key = f"{relative_dir}/{entry.name}" if relative_dir else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False):
                        subdirs.append(key)
                        continue
                    is_file = entry.is_file()
                except OSError:
                    is_file = False
                if is_file and entry.name.lower().endswith(IMAGE_SUFFIXES):
                    yield key
                else:
                    counts.ignored += 1
        pending.extend(reversed(subdirs))


def count_images(root: str) -> int:
    """How many images :func:`iter_image_keys` will yield (a cheap names-only pass, for the progress bar)."""
    return sum(1 for _ in iter_image_keys(root))
