"""BitmaskLabels: the model's masks as Label Studio 1.2x's pixel-mask PNG (``value.imageDataURL``).

The PNG is checked with Pillow on its own (size, mode, black opaque pixels exactly on the mask), the
predictions of the real NExT-Chat code (tiny random checkpoint) against the model's own masks, and the
results against the config with label-studio-sdk's validator.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from label_studio_sdk.label_interface import LabelInterface
from PIL import Image

from backend.export.annotations import read_region
from backend.studio.results import BitmaskLabelsResult, result_mask
from backend.studio.results.bitmask import bitmask_url_to_mask, mask_to_bitmask_url
from tests.backend.fakes import (
    check_results_fit_config,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    predict_body,
)
from tests.backend.scripted import ScriptedNextChat, image_uri, load_tiny_model

BITMASK = label_config("bitmask.xml")
WIDTH, HEIGHT = 200, 120


@pytest.fixture(scope="module")
def nextchat(random_tiny_checkpoint):
    return load_tiny_model(random_tiny_checkpoint)


def blob(width=WIDTH, height=HEIGHT) -> np.ndarray:
    mask = np.zeros((height, width), dtype=bool)
    mask[10:60, 30:90] = True
    mask[70:75, 150:199] = True
    return mask


def png_of(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix):])))


def test_png_is_black_on_transparent_at_the_natural_size():
    mask = blob()
    image = png_of(mask_to_bitmask_url(mask))
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (WIDTH, HEIGHT)
    pixels = np.asarray(image)
    assert (pixels[..., :3] == 0).all()
    assert set(np.unique(pixels[..., 3]).tolist()) == {0, 255}
    assert ((pixels[..., 3] == 255) == mask).all()
    assert (bitmask_url_to_mask(mask_to_bitmask_url(mask), WIDTH, HEIGHT) == mask).all()


@pytest.mark.parametrize(("url", "reason"), [
    ("data:image/jpeg;base64,AAAA", "not a data:image/png"),
    ("data:image/png;base64,!!!!", "not a readable PNG"),
    ("data:image/png;base64," + base64.b64encode(b"not a png").decode(), "not a readable PNG"),
])
def test_unreadable_bitmasks_are_one_line_errors(url, reason):
    with pytest.raises(ValueError, match=reason):
        bitmask_url_to_mask(url, WIDTH, HEIGHT)
    with pytest.raises(ValueError, match="not the image's 100x120"):
        bitmask_url_to_mask(mask_to_bitmask_url(blob()), 100, HEIGHT)


def test_builder_and_readers():
    builder = BitmaskLabelsResult("mask", "image", WIDTH, HEIGHT)
    result = builder.build(blob(), "car", score=1.2, region_id="abc")
    assert result["type"] == "bitmasklabels" and result["value"]["bitmasklabels"] == ["car"]
    assert result["score"] == 1.0 and (result["original_width"], result["original_height"]) == (WIDTH, HEIGHT)
    assert set(result["value"]) == {"imageDataURL", "bitmasklabels"}
    assert builder.build(np.zeros((HEIGHT, WIDTH), bool), "car") is None
    assert (result_mask(result) == blob()).all()
    # a corrected bitmask annotation reads back for the stage-3 export like a brush mask
    region = read_region("abc", [{**result, "origin": "manual"}], None)
    assert region.kind == "brush" and region.labels == ["car"] and (region.mask == blob()).all()
    assert region.bbox == (30.0, 10.0, 199.0, 75.0)


def test_preannotation_gives_each_models_mask_as_a_bitmask(nextchat):
    model = ScriptedNextChat(nextchat)
    reply = make_app(model).test_client().post("/predict", json=predict_body([ls_task(1, image_uri(WIDTH, HEIGHT))],
                                                                           BITMASK))
    (entry,) = reply.get_json()["results"]
    (grounded,) = model.called("ground_many")
    assert grounded[2] == ("person", "car", "dog", "the sky")
    expected = [(label, region.mask) for label, found in zip(("person", "car", "dog", "sky"), grounded[3])
                for region in found if region.score >= 0.3 and region.mask.any()]
    assert len(entry["result"]) == len(expected) > 0
    for item, (label, mask) in zip(entry["result"], expected):
        assert item["value"]["bitmasklabels"] == [label]
        assert (np.asarray(png_of(item["value"]["imageDataURL"]))[..., 3] == 255).tolist() == mask.tolist()
    check_results_fit_config(entry["result"], BITMASK, WIDTH, HEIGHT)
    assert LabelInterface(BITMASK).validate_prediction(entry, return_errors=True) == []


def test_a_drawn_box_is_segmented_into_a_bitmask(nextchat):
    config = BITMASK.replace("</View>", '<RectangleLabels name="box" toName="image"><Label value="car"/>'
                                        '</RectangleLabels></View>')
    model = ScriptedNextChat(nextchat)
    context = drawn_box_context(label="car", x=10, y=20, width=50, height=50)
    reply = make_app(model).test_client().post("/predict", json=predict_body(
        [ls_task(1, image_uri(WIDTH, HEIGHT))], config, context))
    (entry,) = reply.get_json()["results"]
    (segmented,) = model.called("segment")
    assert segmented[2] == (20.0, 24.0, 120.0, 84.0)
    (bitmask,) = [item for item in entry["result"] if item["type"] == "bitmasklabels"]
    assert bitmask["value"]["bitmasklabels"] == ["car"]  # the drawn box's label
    assert (result_mask(bitmask) == segmented[3].mask).all()
    assert LabelInterface(config).validate_prediction(entry, return_errors=True) == []
