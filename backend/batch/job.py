"""What a batch job is: its images, its labeling config, its settings, how tasks reference images.

A :class:`JobSpec` holds only plain values (no secrets), so it can be pickled to Ray workers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from backend.settings import SECRET_FIELDS, Settings
from backend.studio.labeling import ImageTarget, LabelConfigError, LabelingConfig, parse_label_config


class JobError(ValueError):
    """The job cannot start (bad config, labels, folders); a one-line reason."""


def default_label_config(labels: list[str]) -> str:
    """A config for plain label lists: each label as a box (RectangleLabels) and an outline (PolygonLabels)."""
    items = "\n".join(f"    <Label value={quoteattr(label)}/>" for label in labels)
    return (f'<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            f'  <RectangleLabels name="box" toName="image">\n{items}\n  </RectangleLabels>\n'
            f'  <PolygonLabels name="polygon" toName="image">\n{items}\n  </PolygonLabels>\n</View>\n')


def restrict_labels(target: ImageTarget, labels: list[str]) -> ImageTarget:
    """``target`` whose region controls keep only ``labels`` (catch-all labels stay: they name no object)."""
    known = {label.value for control in target.region_controls for label in control.labels}
    missing = [label for label in labels if label not in known]
    if missing:
        raise JobError(f"labels {missing} are not in the label config (it has {sorted(known)})")
    wanted = set(labels)
    controls = []
    for control in target.region_controls:
        kept = tuple(label for label in control.labels if label.value in wanted or label.catch_all)
        if kept:
            controls.append(replace(control, labels=kept))
    return replace(target, region_controls=tuple(controls))


@dataclass(frozen=True)
class JobSpec:
    images_root: str                 # absolute folder walked for images
    label_config: str                # the XML used (given, or made from --labels)
    labels: tuple[str, ...]          # labels to pre-annotate; empty: every label of the config
    settings: Settings               # model, thresholds, image limits (secrets blanked)
    document_root: str | None = None  # set: tasks reference /data/local-files/?d=<path under it>

    @classmethod
    def create(cls, images_root, label_config: str | None, labels: list[str], settings: Settings,
               document_root: str | None) -> JobSpec:
        root = Path(images_root).expanduser().resolve()
        if not root.is_dir():
            raise JobError(f"--images {images_root}: not a folder")
        if label_config is None:
            if not labels:
                raise JobError("give --labels a,b,c or --label-config FILE")
            label_config = default_label_config(labels)
        doc_root = None
        if document_root:
            doc_root = Path(document_root).expanduser().resolve()
            if not root.is_relative_to(doc_root):
                raise JobError(f"--images {root} is not inside the document root {doc_root}")
            doc_root = str(doc_root)
        blanked = settings.replace(**{name: "" for name in SECRET_FIELDS})
        spec = cls(str(root), label_config, tuple(labels), blanked, doc_root)
        spec.target()  # fail now, not on the first image
        return spec

    def config(self) -> LabelingConfig:
        try:
            parsed = parse_label_config(self.label_config)
        except LabelConfigError as exc:
            raise JobError(f"label config: {exc}") from None
        if len(parsed.targets) != 1:
            raise JobError(f"the label config must have exactly one Image this backend fills; it has "
                           f"{len(parsed.targets)}")
        target = parsed.targets[0]
        if target.value_list:
            raise JobError(f"the Image {target.name!r} takes a list of images (valueList); batch jobs make one "
                           "task per image file, so give a config with <Image value=\"$image\">")
        if self.labels:
            target = restrict_labels(target, list(self.labels))
        if not target.region_controls and not target.caption_areas and not target.choices:
            raise JobError("the label config has no RectangleLabels/PolygonLabels/BrushLabels/BitmaskLabels, "
                           "caption TextArea or Choices to pre-annotate")
        return LabelingConfig(targets=(target,), skipped=parsed.skipped)

    def target(self) -> ImageTarget:
        return self.config().targets[0]

    def image_path(self, key: str) -> Path:
        """The file of an image key (its path relative to the images folder, with / separators)."""
        return Path(self.images_root, *key.split("/"))

    def image_reference(self, key: str) -> str:
        """The value of ``data.<image key>`` in the task: a local-files URL under the document root,
        else the absolute file path."""
        path = self.image_path(key)
        if self.document_root is None:
            return str(path)
        relative = path.relative_to(self.document_root).as_posix()
        return "/data/local-files/?d=" + quote(relative, safe="/")

    def fingerprint(self) -> str:
        """What must match for a rerun to reuse finished images."""
        s = self.settings
        fields = {"images_root": self.images_root, "label_config": self.label_config, "labels": self.labels,
                  "document_root": self.document_root, "checkpoint": s.checkpoint, "vision_tower": s.vision_tower,
                  "score_threshold": s.score_threshold, "mask_iou_threshold": s.mask_iou_threshold,
                  "polygon_tolerance": s.polygon_tolerance, "describe_regions": s.describe_regions}
        if s.delta:  # only when set, so runs without a delta keep their fingerprint
            fields["delta"] = s.delta
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]
