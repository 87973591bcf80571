"""The job's sidecar state: a JSON-lines file, one line per finished image, appended as images finish.

Line 1 is ``{"header": {"fingerprint": ...}}``; then ``{"key": path, "task": {...}}`` for a labelled image
or ``{"key": path, "error": reason}`` for one that failed (retried by a rerun). A rerun with the same
fingerprint skips every key that has a task. The final JSON array is streamed from this file, so no
list of results is ever held in memory (only the set of finished keys).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

FORMAT_VERSION = 1


class StateError(ValueError):
    """The state file belongs to another job or cannot be read; a one-line reason."""


class StateFile:
    def __init__(self, path: str | Path, fingerprint: str):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.done: set[str] = set()
        self._handle = None

    # ------------------------------------------------------------------------- open
    def open(self, restart: bool = False) -> StateFile:
        """Read what an earlier run finished (unless ``restart``), then open for appending."""
        if restart or not self.path.exists() or self.path.stat().st_size == 0:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"header": {"fingerprint": self.fingerprint, "version": FORMAT_VERSION}}
            self.path.write_text(json.dumps(header) + "\n")
        else:
            self._check_header()
            self._drop_partial_last_line()
            self.done.update(line["key"] for line in self._records() if "task" in line)
        self._handle = self.path.open("a", encoding="utf-8")
        return self

    def _check_header(self) -> None:
        with self.path.open("r", encoding="utf-8") as handle:
            first = handle.readline()
        try:
            header = json.loads(first)["header"]
        except (ValueError, KeyError, TypeError):
            raise StateError(f"{self.path} is not a batch state file; remove it or pass --restart") from None
        if header.get("fingerprint") != self.fingerprint:
            raise StateError(f"{self.path} was written by a job with other images, labels, config, checkpoint "
                             "or thresholds; pass --restart to start over or use another --out/--state")

    def _drop_partial_last_line(self) -> None:
        """A run killed mid-write leaves a line without its newline: cut it (that image is redone)."""
        with self.path.open("rb+") as handle:
            size = handle.seek(0, os.SEEK_END)
            if size == 0:
                return
            handle.seek(size - 1)
            if handle.read(1) == b"\n":
                return
            position = size
            while position > 0:
                step = min(65536, position)
                handle.seek(position - step)
                chunk = handle.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    handle.truncate(position - step + newline + 1)
                    return
                position -= step
            handle.truncate(0)

    def _records(self) -> Iterator[dict]:
        with self.path.open("r", encoding="utf-8") as handle:
            next(handle, None)
            for text in handle:
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                if isinstance(record, dict) and isinstance(record.get("key"), str):
                    yield record

    # ------------------------------------------------------------------------- append
    def add_task(self, key: str, task: dict) -> None:
        self._write({"key": key, "task": task})
        self.done.add(key)

    def add_failure(self, key: str, reason: str) -> None:
        self._write({"key": key, "error": reason})

    def add_line(self, line: str) -> None:
        """A record already serialised (from a Ray worker)."""
        record = json.loads(line)
        self._handle.write(line.rstrip("\n") + "\n")
        self._handle.flush()
        if "task" in record:
            self.done.add(record["key"])

    def _write(self, record: dict) -> None:
        self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    # ------------------------------------------------------------------------- read back
    def iter_tasks(self) -> Iterator[tuple[str, dict]]:
        """(key, task) of every labelled image, first record per key, in the order they finished."""
        seen: set[str] = set()
        for record in self._records():
            if "task" in record and record["key"] not in seen:
                seen.add(record["key"])
                yield record["key"], record["task"]


def write_json_array(tasks: Iterator[dict], out_path: str | Path) -> int:
    """Stream ``tasks`` into a JSON array at ``out_path`` (written beside it, then renamed); returns the count."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_path.with_name(out_path.name + ".tmp")
    count = 0
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write("[")
        for task in tasks:
            handle.write(",\n" if count else "\n")
            handle.write(json.dumps(task, ensure_ascii=False))
            count += 1
        handle.write("\n]\n" if count else "]\n")
    os.replace(temporary, out_path)
    return count
