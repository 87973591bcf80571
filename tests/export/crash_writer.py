"""Child process for test_crash.py: applies webhook updates to DIR forever, until it is killed.

    python -m tests.export.crash_writer DIR
Prints "ready" once the first batch is on disk.
"""

from __future__ import annotations

import sys

import numpy as np

from backend.export.live import LiveExporter
from tests.export.helpers import annotation, brush_item, image_bytes, polygon_item, task, text_item, webhook

ANNOTATIONS = 24


def image_loader(value, task_id=None):
    return image_bytes(320, 240, seed=task_id)


def event(round_number: int, annotation_id: int) -> dict:
    task_id = annotation_id % 6
    mask = np.zeros((240, 320), dtype=bool)
    top = 10 + (round_number * 7 + annotation_id) % 100
    mask[top:top + 80, 20:200] = True
    shift = (round_number % 10) * 2
    result = [
        brush_item("b", mask),
        polygon_item("p", [(10 + shift, 10), (60, 10 + shift), (60, 70), (10, 70)]),
        text_item("p", [f"round {round_number} of annotation {annotation_id}"]),
    ]
    stamp = f"2026-01-01T00:00:00.{round_number:06d}Z"
    return webhook("ANNOTATION_UPDATED", annotation(annotation_id, task_id, result, updated_at=stamp),
                   task(task_id, f"/data/upload/1/{task_id}.png", []))


def main(out_dir: str) -> None:
    exporter = LiveExporter(out_dir, images_loader=image_loader)
    round_number = 0
    while True:
        for annotation_id in range(1, ANNOTATIONS + 1):
            exporter.submit(event(round_number, annotation_id))
            if annotation_id % 4 == 0:
                exporter.flush(60)
        if round_number == 0:
            print("ready", flush=True)
        round_number += 1


if __name__ == "__main__":
    main(sys.argv[1])
