"""One Image of the config, for one task: a single image, or each image of a ``valueList`` Image.

``<Image valueList="$pages">`` holds a list of image URLs; Label Studio shows one at a time and a
region says which one it is on with ``item_index`` (0-based, next to ``from_name``). Each image is
predicted on its own (its own image session: CLIP tokens, SAM embedding and prompt cache), and every
result it gives carries that image's ``item_index``; per-region texts and Choices share their region's.

Interactive calls: a drawn region in the context carries the ``item_index`` of the image it was drawn
on (none means 0, as in Label Studio), so only that image is loaded and answered. A typed text has no
image of its own (a TextArea is one per task) and is answered on every image.
"""

from __future__ import annotations

from collections.abc import Mapping

from PIL import Image

from backend.deadline import Deadline
from backend.predict.calls import ModelCalls
from backend.predict.errors import TaskError
from backend.predict.interactive import predict_interactive
from backend.predict.workflows import RegionWorkflows
from backend.studio.config_parts import data_value
from backend.studio.labeling import ImageTarget

TargetImages = Image.Image | Mapping[int, Image.Image] | list  # a valueList target: index -> image, or a list


def item_index_of(item: dict) -> int | None:
    """The ``item_index`` of a context result, None when it has none."""
    index = item.get("item_index")
    return index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None


def items_for_image(items: list[dict], index: int) -> list[dict]:
    """The context results about image ``index``: regions drawn on it, and texts (which have no image)."""
    return [item for item in items
            if item_index_of(item) == index
            or (item_index_of(item) is None and (item.get("type") == "textarea" or index == 0))]


def needed_indices(items: list[dict] | None, count: int) -> list[int]:
    """Which images of a valueList an interactive call needs (all of them for pre-annotation)."""
    if items is None or any(item.get("type") == "textarea" and item_index_of(item) is None for item in items):
        return list(range(count))
    wanted = {item_index_of(item) or 0 for item in items}
    return sorted(index for index in wanted if index < count)


def load_target_images(loader, task: dict, target: ImageTarget, items: list[dict] | None,
                       deadline: Deadline) -> TargetImages:
    """The decoded image(s) of ``target`` for this task (``items``: its context results, None without a
    context). TaskError when the task data lacks them."""
    value = data_value(task.get("data") or {}, target.value_key)
    if value is None:
        raise TaskError(f"task data has no {target.value_key!r} for Image {target.name!r}")
    if not target.value_list:
        return loader.load(value, task.get("id"), deadline)
    if not isinstance(value, list) or not value or not all(isinstance(url, str) for url in value):
        raise TaskError(f"task data {target.value_key!r} (valueList of Image {target.name!r}) "
                        "must be a non-empty list of image URLs")
    return {index: loader.load(value[index], task.get("id"), deadline) for index in needed_indices(items, len(value))}


def image_items(target: ImageTarget, images: TargetImages) -> list[tuple[int | None, Image.Image]]:
    """(item_index, image) pairs: (None, image) for a single Image."""
    if not target.value_list:
        return [(None, images)]
    if isinstance(images, Mapping):
        return sorted(images.items())
    return list(enumerate(images))


def predict_target(flows: RegionWorkflows, task: dict, target: ImageTarget, images: TargetImages,
                   items: list[dict] | None, calls: ModelCalls) -> list[dict]:
    """Results for one Image: pre-annotation (``items`` None) or the interactive answer to ``items``."""
    results: list[dict] = []
    # a typed text is echoed back once per image answered; the task keeps one, with no item_index
    echoes = {item.get("id") for item in items or [] if item.get("type") == "textarea" and item_index_of(item) is None}
    for index, image in image_items(target, images):
        if items is None:
            found = flows.preannotate(task, target, image, calls) + flows.choices.for_image(target, image, calls)
        else:
            found = predict_interactive(flows, task, target, image,
                                        items if index is None else items_for_image(items, index), calls)
        if index is None:
            results += found
            continue
        for result in found:
            if result.get("type") == "textarea" and result.get("id") in echoes:
                if not any(kept.get("id") == result["id"] for kept in results):
                    results.append(result)
            else:
                results.append({**result, "item_index": index})
    return results
