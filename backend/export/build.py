"""One Label Studio annotation -> one stored entry (its stage-3 records and skipped regions).

Used by both the batch export (a JSON export or the API) and the live webhook exporter, so both
write exactly the same records. `ExportContext` carries what does not change per annotation: the
options, the labeling config (label prompts, which task data key holds the image), the image
fetcher and the store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from PIL import Image

from backend.export.annotations import (
    ExportOptions,
    Skip,
    first_shown_size,
    group_by_region,
    read_regions,
)
from backend.export.stage3 import build_record, displayed_size, image_stem, prepare_image
from backend.export.store import Stage3Store
from backend.images.decode import IMAGE_SUFFIXES

log = logging.getLogger(__name__)


class ImageUnavailable(Exception):
    """The task's image could not be found or fetched; str() is a one-line reason."""


@dataclass
class LabelConfigInfo:
    """What the exporter needs from a labeling config: label prompts and Image name -> data key."""

    label_prompts: dict[str, str] = field(default_factory=dict)
    image_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_xml(cls, xml: str | None) -> LabelConfigInfo:
        if not xml:
            return cls()
        from backend.studio.labeling import LabelConfigError, parse_label_config

        try:
            config = parse_label_config(xml)
        except LabelConfigError as exc:
            log.warning("labeling config unreadable, using labels as expressions: %s", exc)
            return cls()
        prompts, keys = {}, {}
        for target in config.targets:
            keys[target.name] = target.value_key
            for control in target.region_controls:
                for label in control.labels:
                    if label.prompt:
                        prompts.setdefault(label.value, label.prompt)
        return cls(prompts, keys)


@dataclass
class ExportContext:
    store: Stage3Store
    fetch_image: object  # callable(value: str, task_id) -> bytes, raises ImageUnavailable
    options: ExportOptions = field(default_factory=ExportOptions)
    config: LabelConfigInfo = field(default_factory=LabelConfigInfo)

    def region_options(self) -> ExportOptions:
        options = self.options
        prompts = {**self.config.label_prompts, **options.label_prompts}
        return ExportOptions(options.boxes_as_masks, options.include_accepted_predictions, prompts)


def looks_like_image(value) -> bool:
    if not isinstance(value, str):
        return False
    lowered = value.lower().split("?")[0]
    return value.startswith(("data:image/", "/data/")) or lowered.endswith(IMAGE_SUFFIXES)


def image_value(task: dict, result: list, config: LabelConfigInfo) -> str:
    """The task data value of the Image the results point at (to_name)."""
    data = task.get("data") if isinstance(task.get("data"), dict) else {}
    to_names = [item.get("to_name") for item in result if isinstance(item, dict) and item.get("to_name")]
    for to_name in dict.fromkeys(to_names):
        key = config.image_keys.get(to_name, to_name)
        if isinstance(data.get(key), str) and data[key]:
            return data[key]
    candidates = [value for value in data.values() if looks_like_image(value)]
    if len(candidates) == 1:
        return candidates[0]
    raise ImageUnavailable("cannot tell which task data value is the image (pass the labeling config)")


def annotation_skip_reason(annotation: dict) -> str | None:
    if annotation.get("was_cancelled"):
        return "annotation cancelled (skipped by the annotator)"
    result = annotation.get("result")
    if not isinstance(result, list) or not result:
        return "empty annotation (no result)"
    return None


def stored_image(store: Stage3Store, stem: str, size: tuple[int, int]) -> str | None:
    """img_path of an image already stored for this task at this size, if any."""
    path = store.find_image(stem)
    if path is None:
        return None
    try:
        with Image.open(path) as image:
            return path.name if image.size == tuple(size) else None
    except Exception:  # noqa: BLE001 - an unreadable file is simply fetched again
        return None


def ensure_image(context: ExportContext, task: dict, value: str, size) -> tuple[str, tuple[int, int]]:
    """Store the task's image as the annotator saw it; returns (img_path, (width, height))."""
    stem = image_stem(task.get("id"), value)
    if size is not None:
        existing = stored_image(context.store, stem, size)
        if existing:
            return existing, tuple(size)
    data = context.fetch_image(value, task.get("id"))
    try:
        target = tuple(size) if size else displayed_size(data)
        prepared = prepare_image(data, target)
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
        raise ImageUnavailable(f"image unreadable: {type(exc).__name__}") from None
    return context.store.write_image(stem, prepared.suffix, prepared.data), target


def build_entry(context: ExportContext, task: dict, annotation: dict) -> dict:
    """The stored entry of one annotation: records (one per usable region) and skips with reasons."""
    task_id = task.get("id", annotation.get("task"))
    entry = {
        "annotation_id": int(annotation["id"]),
        "task_id": task_id,
        "project_id": annotation.get("project", task.get("project")),
        "updated_at": annotation.get("updated_at"),
        "records": [],
        "skipped": [],
    }

    def skip_all(reason: str, region_ids) -> dict:
        ids = list(region_ids) or [None]
        entry["skipped"] = [Skip(reason, rid, entry["annotation_id"], task_id).as_dict() for rid in ids]
        return entry

    reason = annotation_skip_reason(annotation)
    if reason:
        return skip_all(reason, [])
    result = annotation["result"]
    size = first_shown_size(result)
    img_path = None
    try:
        value = image_value(task, result, context.config)
        if size is None:
            img_path, size = ensure_image(context, task, value, None)
    except ImageUnavailable as exc:
        return skip_all(f"image unavailable: {exc}", group_by_region(result))
    regions, skips = read_regions(result, context.region_options(), size)
    if regions and img_path is None:
        try:
            img_path, _ = ensure_image(context, task, value, size)
        except ImageUnavailable as exc:
            skips += [Skip(f"image unavailable: {exc}", region.region_id) for region in regions]
            regions = []
    for region in regions:
        source = "accepted-prediction" if region.from_prediction else "annotation"
        entry["records"].append(build_record(region, img_path, task_id=task_id,
                                             annotation_id=entry["annotation_id"], source=source))
    entry["skipped"] = [
        Skip(skip.reason, skip.region_id, entry["annotation_id"], task_id).as_dict() for skip in skips
    ]
    return entry


def entry_or_skip(context: ExportContext, task: dict, annotation: dict) -> dict:
    """build_entry, but an annotation too malformed to read becomes an entry with one skip."""
    try:
        return build_entry(context, task, annotation)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("annotation %s unreadable: %s", annotation.get("id"), type(exc).__name__)
        reason = f"annotation unreadable ({type(exc).__name__})"
        return {"annotation_id": int(annotation["id"]), "task_id": task.get("id"),
                "project_id": annotation.get("project", task.get("project")),
                "updated_at": annotation.get("updated_at"), "records": [],
                "skipped": [Skip(reason, None, int(annotation["id"]), task.get("id")).as_dict()]}


def task_annotations(task: dict):
    """(task, annotation) pairs of one exported task; drafts and bare predictions are not annotations."""
    for annotation in task.get("annotations") or []:
        if isinstance(annotation, dict) and str(annotation.get("id", "")).isdigit():
            yield annotation


def export_tasks(context: ExportContext, tasks: list, *, sync: bool = True) -> dict:
    """Store an entry for every annotation of `tasks`, then rebuild res.jsonl; returns the report.

    With `sync`, entries of the same projects that are no longer in `tasks` (deleted in Label
    Studio since the last export) are removed, so DIR mirrors the export.
    """
    store = context.store
    store.remove_temp_files()
    seen, projects = set(), set()
    for task in tasks:
        for annotation in task_annotations(task):
            entry = entry_or_skip(context, task, annotation)
            store.put_entry(entry)
            seen.add(entry["annotation_id"])
            projects.add(entry["project_id"])
    if sync:
        for entry in store.all_entries():
            if entry["annotation_id"] not in seen and entry.get("project_id") in projects:
                store.delete_entry(entry["annotation_id"], tombstone=False)
    return store.rebuild()
