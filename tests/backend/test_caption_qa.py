"""Grounded caption and region Q&A with the real NExT-Chat code, checked region by region.

The model is a random tiny checkpoint (its free-running text means nothing), so every caption and
answer is *forced* (teacher forcing through the model API's ``forced_answer``): the given markup is
run through the model and each ``<at> <boxes>`` is decoded into a real box, SAM mask and score.
Requests go through the Flask app with bodies shaped as Label Studio 1.23 sends them (a stored
task's /predict, an interactive context), and each returned region is compared with the model
region it came from: label (synonym, plural, contains, catch-all, none), per-region text (the
phrase), caption / answer text, geometry (percent of the image, equal to the model's box) and the
ids that tie a shape to its text.
"""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image, ImageDraw

from backend.predict.holder import load_model
from backend.settings import load_settings
from backend.studio.labeling import parse_label_config
from tests.backend.fakes import (
    check_results_fit_config,
    data_uri,
    label_config,
    ls_task,
    make_app,
    predict_body,
    textarea_context,
)

WIDTH, HEIGHT = 200, 120  # not square: x and y percentages use different sides

CAPTION = ("A man <at> <boxes> with a bike <at> <boxes> near two cats <at> <boxes> <at> <boxes> "
           "on a sofa <at> <boxes> .")
ANSWER = "The woman <at> <boxes> is holding two dogs <at> <boxes> <at> <boxes> with a ball <at> <boxes> ."

# labels with spaces and special characters; "box" has no catch-all label, "outline" has one
SPECIAL_CONFIG = """<View>
  <Image name="image" value="$image"/>
  <TextArea name="caption" toName="image" role="caption"/>
  <RectangleLabels name="box" toName="image">
    <Label value="Traffic Light"/><Label value="T-shirt" predicted_values="tee"/>
    <Label value="person (adult)" predicted_values="man,woman"/><Label value="5G tower"/>
  </RectangleLabels>
  <PolygonLabels name="outline" toName="image" smart="false">
    <Label value="Traffic Light"/><Label value="T-shirt" predicted_values="tee"/>
    <Label value="person (adult)" predicted_values="man,woman"/><Label value="5G tower"/>
    <Label value="thing" catch_all="true"/>
  </PolygonLabels>
  <TextArea name="phrase" toName="image" perRegion="true"/>
</View>"""
SPECIAL_CAPTION = ("Traffic lights <at> <boxes> near a woman <at> <boxes> in a T-Shirt <at> <boxes> "
                   "by a 5G Tower <at> <boxes> with a kite <at> <boxes> .")


class ForcedAnswers:
    """The loaded NextChat with its captions and answers forced; every model call is recorded."""

    def __init__(self, model, caption: str = CAPTION, answer: str = ANSWER):
        self.model, self.caption_markup, self.answer_markup = model, caption, answer
        self.calls: list[tuple] = []

    def __getattr__(self, name):  # model_version, segment, tokenizer ... as the model has them
        return getattr(self.model, name)

    def caption(self, image):
        reply = self.model.caption(image, forced_answer=self.caption_markup)
        self.calls.append(("caption", reply))
        return reply

    def ask(self, image, question, boxes=None):
        reply = self.model.ask(image, question, boxes, forced_answer=self.answer_markup)
        self.calls.append(("ask", question, [tuple(box) for box in boxes or []], reply))
        return reply

    def ground_many(self, image, expressions):
        self.calls.append(("ground_many", tuple(expressions)))
        return self.model.ground_many(image, expressions)

    def describe(self, image, box):
        self.calls.append(("describe", tuple(box)))
        return self.model.describe(image, box)

    def methods_called(self) -> list[str]:
        return [call[0] for call in self.calls]


@pytest.fixture(scope="module")
def nextchat(random_tiny_checkpoint):
    settings = load_settings({}, checkpoint=str(random_tiny_checkpoint),
                             vision_tower=str(random_tiny_checkpoint / "vision_tower"))
    return load_model(settings)


def scene_uri() -> str:
    image = Image.new("RGB", (WIDTH, HEIGHT), (135, 190, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 40, 90, 110], fill=(200, 30, 40))
    draw.ellipse([120, 20, 180, 80], fill=(140, 90, 40))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return data_uri(buffer.getvalue())


def post(client, tasks, config, context=None) -> list[dict]:
    reply = client.post("/predict", json=predict_body(tasks, config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    (entry,) = reply.get_json()["results"]
    return entry["result"]


# ----------------------------------------------------------------------------- region-by-region checks
def whole_image_text(result: list[dict], name: str) -> list[str]:
    items = [item for item in result if item["from_name"] == name]
    assert len(items) == 1, f"{name}: {items}"
    return items[0]["value"]["text"]


def region_chunks(result: list[dict], config_xml: str) -> list[list[dict]]:
    """The region results split per model region: its shapes, then its per-region text(s)."""
    target = parse_label_config(config_xml).targets[0]
    per_region = {area.name for area in target.region_areas}
    whole = {area.name for area in target.text_areas} - per_region
    chunks, current = [], []
    for item in result:
        if item["from_name"] in whole:
            continue
        current.append(item)
        if item["from_name"] in per_region:
            chunks.append(current)
            current = []
    assert current == [], f"shapes without a per-region text: {current}"
    return chunks


def percent_box(box, width=WIDTH, height=HEIGHT) -> dict:
    x0, y0, x1, y1 = box
    return {"x": x0 / width * 100, "y": y0 / height * 100,
            "width": (x1 - x0) / width * 100, "height": (y1 - y0) / height * 100}


def check_chunk(chunk: list[dict], region, labels: dict[str, str]) -> None:
    """One model region's results: shapes on exactly the controls in `labels` (control -> label), the
    rectangle equal to the model's box in percent, polygons traced inside the model's mask, and the
    phrase as per-region text under the id of the first shape."""
    shapes = [item for item in chunk if item["type"] != "textarea"]
    texts = [item for item in chunk if item["type"] == "textarea"]
    assert {item["from_name"]: item["value"][item["type"]] for item in shapes} == {
        name: [label] for name, label in labels.items()}
    for shape in shapes:
        assert (shape["original_width"], shape["original_height"]) == (WIDTH, HEIGHT)
        assert shape["score"] == pytest.approx(min(1.0, region.score))
        if shape["type"] == "rectanglelabels":
            value = shape["value"]
            for key, expected in percent_box(region.box).items():
                assert value[key] == pytest.approx(expected, abs=1e-6), key
            assert 0 <= value["x"] and value["x"] + value["width"] <= 100 + 1e-6
            assert 0 <= value["y"] and value["y"] + value["height"] <= 100 + 1e-6
        else:
            check_polygon_in_mask(shape["value"]["points"], region.mask)
    assert len({shape["id"] for shape in shapes}) == len(shapes)
    (text,) = texts
    assert text["value"]["text"] == [region.phrase]
    assert text["id"] == shapes[0]["id"]  # the rectangle if there is one (shapes come box first)
    geometry = {key: value for key, value in text["value"].items() if key != "text"}
    assert geometry == {key: value for key, value in shapes[0]["value"].items() if key in geometry}


def check_polygon_in_mask(points, mask: np.ndarray) -> None:
    assert len(points) >= 3
    assert all(0 <= coordinate <= 100 for point in points for coordinate in point)
    rows, columns = np.nonzero(mask)
    xs = [x / 100 * WIDTH for x, _ in points]
    ys = [y / 100 * HEIGHT for _, y in points]
    assert columns.min() - 1 <= min(xs) and max(xs) <= columns.max() + 2
    assert rows.min() - 1 <= min(ys) and max(ys) <= rows.max() + 2


def check_regions(result, config_xml, regions, expected_labels) -> None:
    """`expected_labels[i]`: control -> label for model region i ({} = no shape at all)."""
    chunks = iter(region_chunks(result, config_xml))
    for region, labels in zip(regions, expected_labels, strict=True):
        if labels:
            check_chunk(next(chunks), region, labels)
    assert next(chunks, None) is None
    check_results_fit_config(result, config_xml, WIDTH, HEIGHT)
    shape_ids = [item["id"] for item in result if item["type"] != "textarea"]
    assert len(set(shape_ids)) == len(shape_ids)


def both(label: str) -> dict[str, str]:
    return {"box": label, "polygon": label}


# ----------------------------------------------------------------------------- grounded caption
def test_grounded_caption_region_by_region(nextchat):
    model = ForcedAnswers(nextchat)
    config = label_config("grounded_caption.xml")
    result = post(make_app(model).test_client(), [ls_task(1, scene_uri())], config)

    assert model.methods_called() == ["caption"]  # the labels are phrase categories, not prompts here
    caption = model.calls[0][1]
    assert caption.text == "A man with a bike near two cats on a sofa."
    assert [region.phrase for region in caption.regions] == ["A man", "a bike", "two cats", "two cats", "a sofa"]
    assert whole_image_text(result, "caption") == [caption.text]
    # synonym, synonym, plural of a synonym inside the phrase (twice: one region per box), catch-all
    check_regions(result, config, caption.regions, [
        both("person"), both("vehicle"), both("animal"), both("animal"), both("object")])


def test_caption_labels_with_spaces_and_special_characters(nextchat, caplog):
    model = ForcedAnswers(nextchat, caption=SPECIAL_CAPTION)
    with caplog.at_level(logging.INFO, logger="backend.predict"):
        result = post(make_app(model).test_client(), [ls_task(1, scene_uri())], SPECIAL_CONFIG)

    caption = model.calls[0][1]
    assert [region.phrase for region in caption.regions] == [
        "Traffic lights", "a woman", "a T-Shirt", "a 5G Tower", "a kite"]

    def on_both(label):
        return {"box": label, "outline": label}

    # plural + case, synonym, case + hyphen, case + digit; "a kite": no label on "box" (no catch-all)
    # so no rectangle, the catch-all on "outline", and the phrase rides on that polygon
    check_regions(result, SPECIAL_CONFIG, caption.regions, [
        on_both("Traffic Light"), on_both("person (adult)"), on_both("T-shirt"), on_both("5G tower"),
        {"outline": "thing"}])
    assert whole_image_text(result, "caption") == [caption.text]
    assert caption.text == "Traffic lights near a woman in a T-Shirt by a 5G Tower with a kite."
    assert "caption phrase 'a kite' matches no label of box" in caplog.text


def test_caption_phrase_without_label_or_catch_all_keeps_only_its_text(nextchat, caplog):
    config = SPECIAL_CONFIG.replace('<Label value="thing" catch_all="true"/>', "")
    model = ForcedAnswers(nextchat, caption=SPECIAL_CAPTION)
    with caplog.at_level(logging.INFO, logger="backend.predict"):
        result = post(make_app(model).test_client(), [ls_task(1, scene_uri())], config)
    caption = model.calls[0][1]
    check_regions(result, config, caption.regions, [
        {"box": "Traffic Light", "outline": "Traffic Light"}, {"box": "person (adult)", "outline": "person (adult)"},
        {"box": "T-shirt", "outline": "T-shirt"}, {"box": "5G tower", "outline": "5G tower"}, {}])
    assert "kite" in whole_image_text(result, "caption")[0]
    assert "a kite" not in [item["value"]["text"][0] for item in result if item["from_name"] == "phrase"]
    assert "caption phrase 'a kite' matches no label of box, outline" in caplog.text


# ----------------------------------------------------------------------------- region Q&A
ANSWER_LABELS = [{"box": "person"}, {"box": "animal"}, {"box": "animal"}, {"box": "object"}]


def check_answer(model, result, config, question_sent: str) -> None:
    (call,) = [call for call in model.calls if call[0] == "ask"]
    answer = call[3]
    assert answer.text == "The woman is holding two dogs with a ball."
    assert [region.phrase for region in answer.regions] == ["The woman", "two dogs", "two dogs", "a ball"]
    assert whole_image_text(result, "answer") == [answer.text]
    assert whole_image_text(result, "question") == [question_sent]
    check_regions(result, config, answer.regions, ANSWER_LABELS)


def test_question_stored_in_the_task(nextchat):
    model = ForcedAnswers(nextchat)
    config = label_config("region_qa.xml")
    task = ls_task(1, scene_uri(), question="What is the woman holding?")
    result = post(make_app(model).test_client(), [task], config)
    assert model.methods_called() == ["ask"]
    assert model.calls[0][1:3] == ("What is the woman holding?", [])
    check_answer(model, result, config, "What is the woman holding?")


def test_typed_question_is_answered_and_echoed(nextchat):
    model = ForcedAnswers(nextchat)
    config = label_config("region_qa.xml")
    context = textarea_context("What is the woman holding?", from_name="question")
    result = post(make_app(model).test_client(), [ls_task(1, scene_uri())], config, context)
    assert model.calls[0][1:3] == ("What is the woman holding?", [])
    check_answer(model, result, config, "What is the woman holding?")
    echo = next(item for item in result if item["from_name"] == "question")
    assert echo["id"] == context["result"][0]["id"]


def drawn_rectangle(x, y, width, height, origin="manual", item_id="Drawn00001") -> dict:
    return {"id": item_id, "from_name": "box", "to_name": "image", "type": "rectanglelabels", "origin": origin,
            "original_width": WIDTH, "original_height": HEIGHT, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": width, "height": height, "rotation": 0,
                      "rectanglelabels": ["person"]}}


def test_question_about_a_box_drawn_in_the_same_context(nextchat):
    model = ForcedAnswers(nextchat)
    config = label_config("region_qa.xml")
    context = textarea_context("What is this person holding?", from_name="question")
    context["result"] += [drawn_rectangle(50, 25, 25, 50, origin="prediction", item_id="Predicted1"),
                          drawn_rectangle(10, 25, 40, 50)]
    result = post(make_app(model).test_client(), [ls_task(1, scene_uri())], config, context)
    # the box the annotator drew (not the predicted one) is the question's input region [0]
    assert model.calls[0][1:3] == ("What is this person [0] holding?", [(20.0, 30.0, 100.0, 90.0)])
    check_answer(model, result, config, "What is this person holding?")


def test_question_about_a_box_in_the_annotators_draft(nextchat):
    """A typed question's context holds only the TextArea; the box the annotator drew before is in
    the draft Label Studio sends along with the task."""
    model = ForcedAnswers(nextchat)
    config = label_config("region_qa.xml")
    task = ls_task(1, scene_uri())
    task["drafts"] = [
        {"id": 1, "updated_at": "2026-11-25T10:00:00Z", "result": [drawn_rectangle(0, 0, 50, 50)]},
        {"id": 2, "updated_at": "2026-11-25T10:05:00Z", "result": [
            drawn_rectangle(60, 10, 30, 30, origin="prediction", item_id="Predicted1"),
            drawn_rectangle(10, 25, 40, 50)]},
    ]
    context = textarea_context("What is that woman holding?", from_name="question")
    client = make_app(model).test_client()
    result = post(client, [task], config, context)
    assert model.calls[0][1:3] == ("What is that woman [0] holding?", [(20.0, 30.0, 100.0, 90.0)])
    check_answer(model, result, config, "What is that woman holding?")

    # explicit references name the draft's boxes in order; a question that points at nothing gets none
    post(client, [task], config, textarea_context("Is [1] next to [0]?", from_name="question"))
    assert model.calls[-1][1:3] == ("Is [1] next to [0]?", [(120.0, 12.0, 180.0, 48.0), (20.0, 30.0, 100.0, 90.0)])
    post(client, [task], config, textarea_context("How many dogs are there?", from_name="question"))
    assert model.calls[-1][1:3] == ("How many dogs are there?", [])


def test_question_naming_a_box_that_is_not_there_is_refused_in_the_question_area(nextchat):
    from backend.studio.results.textarea import MESSAGE_PREFIX

    model = ForcedAnswers(nextchat)
    client = make_app(model).test_client()
    config = label_config("region_qa.xml")
    for question in ("What is in [0]?", "Compare [0] and [3]"):
        context = textarea_context(question, from_name="question")
        if "[3]" in question:
            context["result"].append(drawn_rectangle(10, 25, 40, 50))
        reply = client.post("/predict", json=predict_body([ls_task(1, scene_uri())], config, context))
        assert reply.status_code == 200
        (item,) = reply.get_json()["results"][0]["result"]  # only the question's TextArea, nothing stored
        typed, message = item["value"]["text"]
        assert item["from_name"] == "question" and typed == question
        assert message.startswith(MESSAGE_PREFIX) and "box" in message and "\n" not in message
    assert model.calls == []  # refused before the model ran, or the model refused the prompt
