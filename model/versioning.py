"""A checkpoint's readable version: ``<checkpoint name>@<short revision>``, cheap to compute.

* From the hub cache (``.../models--owner--name/snapshots/<commit>``): the repository name and the first
  7 characters of the snapshot's commit hash, e.g. ``nextchat-7b-336@1a2b3c4``.
* A plain folder: the folder's name and 7 hex characters of a hash over the names, sizes and
  modification times of its weight files and config.json (never the weights' bytes: a 7B checkpoint
  is 15 GB), so replacing the weights gives a new revision.
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path

from .checkpoint import CheckpointError, weight_files

_SNAPSHOT = re.compile(r"[0-9a-f]{7,64}")


def hub_snapshot(directory: Path) -> tuple[str, str] | None:
    """(repository name, commit) when ``directory`` is a hub-cache snapshot folder, else None."""
    snapshots, repo = directory.parent, directory.parent.parent
    if snapshots.name != "snapshots" or not repo.name.startswith("models--") or not _SNAPSHOT.fullmatch(directory.name):
        return None
    return repo.name.split("--")[-1], directory.name


def files_revision(directory: Path) -> str:
    """7 hex characters from the names, sizes and mtimes of the weight files and config.json."""
    try:
        files = weight_files(directory)
    except CheckpointError:
        files = []
    digest = hashlib.sha256()
    for path in sorted({*files, directory / "config.json"}):
        try:
            stat = path.stat()
        except OSError:
            continue
        digest.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:7]


@lru_cache(maxsize=16)
def checkpoint_version(directory: Path) -> str:
    """``<name>@<revision>`` of a checkpoint folder (module doc); computed once per folder and process."""
    directory = Path(directory)
    snapshot = hub_snapshot(directory)
    if snapshot is not None:
        name, commit = snapshot
        return f"{name}@{commit[:7]}"
    return f"{directory.name}@{files_revision(directory)}"
