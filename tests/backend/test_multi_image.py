"""Multi-image tasks (``<Image valueList="$images">``) with the real NExT-Chat code (tiny random checkpoint).

The task's images differ in size and colour, so every model call tells which image it ran on and every
result's ``original_width`` / ``original_height`` tells which image it was made for: each must carry the
``item_index`` of that image.
"""

from __future__ import annotations

import pytest
from label_studio_sdk.label_interface import LabelInterface

from backend.dev.samples import drawn_rectangle
from backend.settings import load_settings
from backend.studio.labeling import parse_label_config
from tests.backend.fakes import check_results_fit_config, label_config, make_app, predict_body, textarea_context
from tests.backend.scripted import ScriptedNextChat, image_uri, load_tiny_model, signature_of

MULTI = label_config("multi_image.xml")
PAGES = [(200, 120, (135, 190, 235)), (90, 160, (20, 200, 20)), (120, 90, (240, 240, 10))]
SIZES = {index: (width, height) for index, (width, height, _) in enumerate(PAGES)}
SIGNATURES = [signature_of(*page) for page in PAGES]
PAGE_Q = "Where was this photo taken? Answer with one of: street, indoors."


@pytest.fixture(scope="module")
def nextchat(random_tiny_checkpoint):
    return load_tiny_model(random_tiny_checkpoint)


class CountingLoader:
    """The app's image loader, counting which task values it was asked for."""

    def __init__(self, settings):
        from backend.images import ImageLoader

        self.inner, self.values = ImageLoader(settings), []

    def load(self, value, task_id, deadline):
        self.values.append(value)
        return self.inner.load(value, task_id, deadline)


def predict(model, config, tasks, context=None, loader=None) -> list[dict]:
    reply = make_app(model, image_loader=loader).test_client().post(
        "/predict", json=predict_body(tasks, config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


def multi_task(task_id=1, pages=PAGES) -> dict:
    return {"id": task_id, "data": {"images": [image_uri(w, h, color) for w, h, color in pages]}}


def test_every_image_is_predicted_and_its_results_carry_its_item_index(nextchat):
    model = ScriptedNextChat(nextchat, {PAGE_Q: "Indoors, I think."})
    (entry,) = predict(model, MULTI, [multi_task()])
    result = entry["result"]

    assert [call[1] for call in model.called("ground_many")] == SIGNATURES  # one image session each, in order
    assert [call[1] for call in model.called("ask")] == SIGNATURES
    for index, (width, height) in SIZES.items():
        on_page = [item for item in result if item["item_index"] == index]
        boxes = [item for item in on_page if item["from_name"] == "box"]
        (grounded,) = [call for call in model.called("ground_many") if call[1] == SIGNATURES[index]]
        model_boxes = [region.box for found in grounded[3] for region in found]
        assert len(boxes) == len(model_boxes) > 0
        for item, (x0, y0, x1, y1) in zip(boxes, model_boxes):
            assert (item["original_width"], item["original_height"]) == (width, height)
            assert item["value"]["x"] == pytest.approx(x0 / width * 100)
            assert item["value"]["width"] == pytest.approx((x1 - x0) / width * 100)
            assert item["value"]["height"] == pytest.approx((y1 - y0) / height * 100)
        descriptions = [item for item in on_page if item["from_name"] == "description"]
        assert [item["id"] for item in descriptions] == [item["id"] for item in boxes]
        (page,) = [item for item in on_page if item["from_name"] == "page"]
        assert page["value"]["choices"] == ["indoors"]  # perItem: one answer per image
    assert {item["item_index"] for item in result} == set(SIZES)
    check_results_fit_config(result, MULTI, 0, 0, sizes=SIZES)
    assert LabelInterface(MULTI).validate_prediction(entry, return_errors=True) == []


def drawn_on(index: int, item_id: str, x=10.0, y=10.0) -> dict:
    width, height = SIZES[index]
    percent = {"x": x, "y": y, "width": 50.0, "height": 50.0}
    return drawn_rectangle(item_id, "box", "image", percent, width, height, "car", item_index=index)


def test_a_box_drawn_on_one_image_loads_and_answers_only_that_image(nextchat):
    model = ScriptedNextChat(nextchat)
    task = multi_task()
    loader = CountingLoader(load_settings({}))
    (entry,) = predict(model, MULTI, [task], {"result": [drawn_on(1, "Drawn00001")]}, loader=loader)
    assert loader.values == [task["data"]["images"][1]]
    (described,) = model.called("describe")
    assert described[1] == SIGNATURES[1] and described[2] == (9.0, 16.0, 54.0, 96.0)
    assert {item["item_index"] for item in entry["result"]} == {1}
    (box,) = [item for item in entry["result"] if item["from_name"] == "box"]
    assert (box["original_width"], box["original_height"]) == SIZES[1] and box["id"] != "Drawn00001"
    check_results_fit_config(entry["result"], MULTI, 0, 0, sizes=SIZES)


def test_a_typed_prompt_is_grounded_on_every_image_and_echoed_once(nextchat):
    config = MULTI.replace("</View>", '<TextArea name="prompt" toName="image" role="prompt"/></View>')
    model = ScriptedNextChat(nextchat)
    (entry,) = predict(model, config, [multi_task()], textarea_context("the red car"))
    assert [call[1] for call in model.called("ground")] == SIGNATURES
    echoes = [item for item in entry["result"] if item["from_name"] == "prompt"]
    assert len(echoes) == 1 and "item_index" not in echoes[0]
    boxes = [item for item in entry["result"] if item["from_name"] == "box"]
    assert sorted({item["item_index"] for item in boxes}) == [0, 1, 2]
    check_results_fit_config(entry["result"], config, 0, 0, sizes=SIZES)


def test_whole_task_outputs_on_a_value_list_image_are_skipped():
    config = parse_label_config(MULTI.replace("</View>", """
      <TextArea name="caption" toName="image" role="caption"/>
      <Choices name="kind" toName="image"><Choice value="a"/></Choices></View>"""))
    reasons = {item.name: item.reason for item in config.skipped}
    assert set(reasons) == {"caption", "kind"}
    assert "no per-image form" in reasons["caption"] and 'perItem="true"' in reasons["kind"]
    (target,) = config.targets
    assert target.value_list and target.caption_areas == () and [c.name for c in target.choices] == ["page"]


@pytest.mark.parametrize("images", ["one.png", [], [1, 2]])
def test_a_value_list_that_is_no_list_of_urls_fails_that_task(nextchat, images):
    (entry,) = predict(ScriptedNextChat(nextchat), MULTI, [{"id": 1, "data": {"images": images}}])
    assert entry["result"] == []
