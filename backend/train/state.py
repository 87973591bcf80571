"""What in-server training keeps on disk, under MODEL_DIR/stage3/:

  state.json                  {"format", "active": {...} | null, "last_run": JOB_ID | null}: the pointer to
                              the delta being served (reloaded on restart) and the last run that trained
  runs/JOB_ID/data/           the snapshot of STAGE3_DIR the job trained on (res.jsonl + the images it names,
                              hard links where the file system allows): `python -m backend finetune` replays it
  runs/JOB_ID/delta.safetensors, metrics.json   what the run wrote (model.stage3.finetune)
  runs/JOB_ID/records.json    the keys of the records it trained on ("new records" are counted against them)
  features/                   the stage-3 feature cache (valid for every delta of the same base)

Every file is written to a temp file and renamed over the old one, so a restart reads either the old or
the new pointer, never a partial one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from backend.files import atomic_write

STATE_FORMAT = "nextchat-train-state/1"
RECORDS_FILE = "res.jsonl"
IMAGES_DIR = "images"


class TrainStateError(ValueError):
    """state.json cannot be read; the message says which file and why, in one line."""


@dataclass(frozen=True)
class ActiveDelta:
    """The published delta being served."""

    run: str              # the job id (folder under runs/)
    delta_id: str         # its short id (the +ft3.<id> of the model version)
    model_version: str
    operator_delta: str   # NEXTCHAT_DELTA when it was published: reloaded only while that is unchanged
    published_at: str     # ISO 8601, UTC

    @classmethod
    def from_dict(cls, raw: dict) -> ActiveDelta:
        return cls(**{name: str(raw.get(name, "")) for name in cls.__dataclass_fields__})


def record_key(line: str) -> str:
    """A record's identity: the hash of its line (an edited annotation gives a new line, so a new record)."""
    return hashlib.sha256(line.strip().encode("utf-8")).hexdigest()[:24]


def write_atomic(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copy2(source, target)


def snapshot_data(stage3_dir: Path, dest: Path) -> list[str]:
    """Copy what the trainer reads from STAGE3_DIR into ``dest`` (res.jsonl and the images it names) and
    return the keys of the records kept. The live export may rewrite STAGE3_DIR during a run; the run reads
    only its snapshot. A record whose image is gone (deleted meanwhile) or whose line is not JSON is left
    out here; the trainer reads the rest (and refuses bad records with one line)."""
    source = stage3_dir / RECORDS_FILE
    if not source.is_file():
        return []
    kept, keys = [], []
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            img_path = json.loads(line)["img_path"]
            image = (stage3_dir / IMAGES_DIR / img_path).resolve()
            image.relative_to((stage3_dir / IMAGES_DIR).resolve())
        except (ValueError, KeyError, TypeError):
            continue
        target = dest / IMAGES_DIR / img_path
        if not target.exists():
            try:
                link_or_copy(image, target)
            except FileNotFoundError:
                continue
        kept.append(line)
        keys.append(record_key(line))
    if kept:
        write_atomic(dest / RECORDS_FILE, "\n".join(kept) + "\n")
    return keys


class TrainState:
    """MODEL_DIR/stage3/: the active-delta pointer, the runs, the feature cache."""

    def __init__(self, model_dir: str | Path):
        self.root = Path(model_dir) / "stage3"
        self.state_file = self.root / "state.json"
        self.features_dir = self.root / "features"

    def run_dir(self, job_id: str) -> Path:
        return self.root / "runs" / job_id

    def read(self) -> dict:
        if not self.state_file.is_file():
            return {"format": STATE_FORMAT, "active": None, "last_run": None}
        try:
            state = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainStateError(f"{self.state_file}: cannot be read ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise TrainStateError(f"{self.state_file}: not a training state file (format {STATE_FORMAT})")
        return state

    def _write(self, **changes) -> None:
        state = self.read()
        state.update(changes)
        write_atomic(self.state_file, json.dumps(state, indent=1) + "\n")

    def active(self) -> ActiveDelta | None:
        raw = self.read().get("active")
        return ActiveDelta.from_dict(raw) if isinstance(raw, dict) else None

    def active_delta_path(self, active: ActiveDelta) -> Path:
        return self.run_dir(active.run) / "delta.safetensors"

    def set_active(self, active: ActiveDelta) -> None:
        self._write(active=asdict(active))

    def last_run_keys(self) -> set[str]:
        """The record keys of the last run that trained (empty before the first)."""
        last = self.read().get("last_run")
        if not last:
            return set()
        try:
            return set(json.loads((self.run_dir(str(last)) / "records.json").read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return set()

    def set_last_run(self, job_id: str, keys: list[str]) -> None:
        write_atomic(self.run_dir(job_id) / "records.json", json.dumps(sorted(set(keys))) + "\n")
        self._write(last_run=job_id)
