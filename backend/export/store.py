"""The stage-3 directory on disk, kept valid at every instant.

Layout of DIR:
  res.jsonl                  the dataset (one record per region), what the trainer reads
  images/task-<id>.<ext>     the images res.jsonl names (img_path is relative to DIR/images)
  report.json                counts and skipped regions with their reasons
  .annotations/<id>.json     one entry per annotation: its records, skips, task, updated_at
  .annotations/<id>.deleted  tombstone of a deleted annotation (late events for it are ignored)

Every file is written as temp file + fsync + os.replace (+ fsync of the folder), so a reader, or a
process killed at any point, sees either the old or the new complete file. Order of writes: image,
then the annotation entry, then res.jsonl, then unreferenced images are removed; so res.jsonl never
names a missing image. `rebuild()` regenerates res.jsonl and report.json from the entries.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from backend.files import TEMP_PREFIX, atomic_write, fsync_dir

ENTRIES = ".annotations"


def dump_json(value) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=1) + "\n").encode("utf-8")


class Stage3Store:
    """Reads and writes one stage-3 directory; not thread-safe (one writer: a thread or a process)."""

    def __init__(self, out_dir):
        self.root = Path(out_dir)
        self.images = self.root / "images"
        self.entries = self.root / ENTRIES
        self.images.mkdir(parents=True, exist_ok=True)
        self.entries.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ leftovers of a killed run
    def remove_temp_files(self) -> int:
        removed = 0
        for folder in (self.root, self.images, self.entries):
            for temp in folder.glob(TEMP_PREFIX + "*"):
                temp.unlink(missing_ok=True)
                removed += 1
        return removed

    # ------------------------------------------------------------------ images
    def find_image(self, stem: str) -> Path | None:
        for candidate in sorted(self.images.glob(stem + ".*")):
            if not candidate.name.startswith(TEMP_PREFIX):
                return candidate
        return None

    def write_image(self, stem: str, suffix: str, data: bytes) -> str:
        """Store a task image; returns its img_path (relative to DIR/images)."""
        path = self.images / (stem + suffix)
        if not (path.is_file() and path.read_bytes() == data):
            atomic_write(path, data)
        return path.name

    # ------------------------------------------------------------------ annotation entries
    def entry_path(self, annotation_id) -> Path:
        return self.entries / f"{int(annotation_id)}.json"

    def tombstone_path(self, annotation_id) -> Path:
        return self.entries / f"{int(annotation_id)}.deleted"

    def read_entry(self, annotation_id) -> dict | None:
        path = self.entry_path(annotation_id)
        try:
            return json.loads(path.read_text("utf-8"))
        except (FileNotFoundError, ValueError):
            return None

    def is_deleted(self, annotation_id) -> bool:
        return self.tombstone_path(annotation_id).exists()

    def put_entry(self, entry: dict) -> None:
        annotation_id = entry["annotation_id"]
        self.tombstone_path(annotation_id).unlink(missing_ok=True)
        atomic_write(self.entry_path(annotation_id), dump_json(entry))

    def delete_entry(self, annotation_id, tombstone: bool = True) -> bool:
        """Forget an annotation; returns whether it was stored."""
        path = self.entry_path(annotation_id)
        existed = path.exists()
        if tombstone:
            atomic_write(self.tombstone_path(annotation_id), b"{}\n")
        path.unlink(missing_ok=True)
        fsync_dir(self.entries)
        return existed

    def entry_ids(self) -> list[int]:
        return sorted(int(p.stem) for p in self.entries.glob("*.json") if p.stem.isdigit())

    def all_entries(self) -> list[dict]:
        entries = []
        for annotation_id in self.entry_ids():
            entry = self.read_entry(annotation_id)
            if entry is not None:
                entries.append(entry)
        return entries

    # ------------------------------------------------------------------ the dataset
    def rebuild(self) -> dict:
        """Rewrite res.jsonl and report.json from the entries; drop images nothing names. Returns the report."""
        entries = self.all_entries()
        lines = [
            json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            for entry in entries
            for record in entry.get("records", [])
        ]
        atomic_write(self.root / "res.jsonl", "".join(line + "\n" for line in lines).encode("utf-8"))
        report = summarize(entries)
        atomic_write(self.root / "report.json", dump_json(report))
        self._remove_unreferenced_images(entries)
        return report

    def _remove_unreferenced_images(self, entries: list[dict]) -> None:
        named = {record["img_path"] for entry in entries for record in entry.get("records", [])}
        for image in self.images.iterdir():
            if image.is_file() and image.name not in named and not image.name.startswith(TEMP_PREFIX):
                image.unlink(missing_ok=True)


def summarize(entries: list[dict]) -> dict:
    """Counts over the stored annotations: records, images, and skipped regions by reason."""
    reasons = Counter()
    skipped = []
    for entry in entries:
        for skip in entry.get("skipped", []):
            reasons[skip["reason"]] += 1
            skipped.append(skip)
    records = [record for entry in entries for record in entry.get("records", [])]
    return {
        "annotations": len(entries),
        "records": len(records),
        "images": len({record["img_path"] for record in records}),
        "records_by_kind": dict(Counter(record.get("kind", "?") for record in records)),
        "skipped": len(skipped),
        "skipped_by_reason": dict(reasons),
        "skipped_regions": skipped,
    }
