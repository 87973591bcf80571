"""The HTTP protocol Label Studio 1.23.2 speaks, with bodies shaped as it sends them (docs/label-studio.md)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from backend.http.app import create_app
from backend.settings import load_settings
from tests.backend.fakes import (
    FakeNextChat,
    check_results_fit_config,
    data_uri,
    drawn_box_context,
    label_config,
    ls_task,
    make_app,
    png_bytes,
    predict_body,
    setup_body,
    textarea_context,
)

BOXES = label_config("boxes_polygons.xml")
IMAGE_640 = data_uri(png_bytes(640, 480, (10, 20, 30)))


def post_predict(client, tasks, config, context=None):
    reply = client.post("/predict", json=predict_body(tasks, config, context))
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


def wait_ready(client, seconds=10.0):
    end = time.monotonic() + seconds
    while client.get("/ready").status_code != 200:
        assert time.monotonic() < end, "model never became ready"
        time.sleep(0.02)


# ----------------------------------------------------------------------------- health and readiness
def test_health_root_versions_and_metrics():
    client = make_app().test_client()
    health = client.get("/health")
    assert health.status_code == 200
    assert health.get_json() == {"status": "UP", "model": "ready", "model_class": "NextChat", "model_ready": True,
                                 "model_version": "fake-nextchat-1"}
    assert client.get("/ready").status_code == 200
    assert client.get("/").status_code == 200
    assert client.get("/versions").get_json() == {"versions": [], "projects": {}, "model": "fake-nextchat-1"}
    version = client.post("/setup", json=setup_body(BOXES)).get_json()["model_version"]
    assert client.get("/versions").get_json()["versions"] == [version]
    assert client.get("/metrics").get_json()["model_ready"] is True


def test_model_loads_in_the_background_and_health_says_so():
    release = threading.Event()
    model = FakeNextChat()

    def loader():
        release.wait(10)
        return model

    client = create_app(load_settings({}), load=loader).test_client()
    health = client.get("/health")  # "Connect model" works while a 7B model loads
    assert health.status_code == 200 and health.get_json()["status"] == "UP"
    assert health.get_json()["model"] == "loading" and health.get_json()["model_ready"] is False
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503 and not_ready.headers["Retry-After"]
    assert client.get("/").status_code == 200  # liveness
    busy = client.post("/predict", json=predict_body([ls_task(1, IMAGE_640)], BOXES))
    assert busy.status_code == 503 and busy.headers["Retry-After"]
    assert client.post("/setup", json=setup_body(BOXES)).get_json() == {"model_version": "loading", "model": "loading"}
    release.set()
    wait_ready(client)
    version = client.post("/setup", json=setup_body(BOXES)).get_json()["model_version"]
    assert version.startswith("fake-nextchat-1+cfg.") and len(version) == len("fake-nextchat-1+cfg.") + 8


def test_failed_load_is_reported_without_traceback():
    def loader():
        raise FileNotFoundError("checkpoint /nope has no config.json")

    client = create_app(load_settings({}), load=loader).test_client()
    end = time.monotonic() + 5
    while client.get("/health").get_json()["model"] == "loading" and time.monotonic() < end:
        time.sleep(0.01)
    health = client.get("/health")
    assert health.status_code == 200 and health.get_json()["model"] == "failed"
    assert client.get("/ready").status_code == 503
    assert "FileNotFoundError: checkpoint /nope has no config.json" in health.get_json()["reason"]
    assert "Traceback" not in health.get_data(as_text=True)
    refused = client.post("/setup", json=setup_body(BOXES))  # Label Studio shows the connect as failed
    assert refused.status_code == 503 and "no config.json" in refused.get_json()["error"]


def test_health_is_fast_while_a_prediction_holds_the_model():
    client = make_app(FakeNextChat(delay_s=1.0)).test_client()
    worker = threading.Thread(target=post_predict, args=(client, [ls_task(1, IMAGE_640)], BOXES))
    worker.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    assert time.monotonic() - started < 0.2
    worker.join()


# ----------------------------------------------------------------------------- /setup
@pytest.mark.parametrize("name", ["all_in_one.xml", "boxes_polygons.xml", "brush.xml", "click_to_mask.xml",
                                  "grounded_caption.xml", "referring_prompt.xml", "region_descriptions.xml",
                                  "region_qa.xml"])
def test_setup_accepts_every_shipped_config(name):
    reply = make_app().test_client().post("/setup", json=setup_body(label_config(name)))
    assert reply.status_code == 200 and reply.get_json()["model_version"].startswith("fake-nextchat-1+cfg.")


def test_setup_rejects_unparseable_schema():
    client = make_app().test_client()
    reply = client.post("/setup", json=setup_body("<View><Image name='image' value='$image'></View>"))
    assert reply.status_code == 400 and "not valid XML" in reply.get_json()["error"]
    assert client.post("/setup", json={**setup_body(BOXES), "schema": 5}).status_code == 400


# ----------------------------------------------------------------------------- pre-annotation
def test_preannotation_one_entry_per_task_in_order():
    model = FakeNextChat()
    client = make_app(model).test_client()
    tasks = [ls_task(7, data_uri(png_bytes(64, 48))), ls_task(3, data_uri(png_bytes(100, 50)))]
    results = post_predict(client, tasks, BOXES)
    assert len(results) == 2
    for entry, size in zip(results, [(64, 48), (100, 50)]):
        assert entry["model_version"].startswith("fake-nextchat-1+cfg.") and 0 < entry["score"] <= 1
        check_results_fit_config(entry["result"], BOXES, *size)
        kinds = sorted({(r["from_name"], r["value"][r["type"]][0]) for r in entry["result"]})
        labels = ["car", "dog", "person", "traffic light"]
        assert kinds == sorted([("box", label) for label in labels] + [("polygon", label) for label in labels])
    # each task's image goes to the model once, with every label's expression (dog's prompt attribute)
    batches = [call[1] for call in model.calls if call[0] == "ground_many"]
    assert batches == [("person", "car", "a dog", "traffic light")] * 2


def test_label_matching_several_objects_gives_several_regions():
    model = FakeNextChat(regions_for={"person": [((0.0, 0.0, 0.2, 0.2), 0.9), ((0.5, 0.5, 0.9, 0.9), 0.8)]})
    results = post_predict(make_app(model).test_client(), [ls_task(1, IMAGE_640)], BOXES)[0]["result"]
    people = [r for r in results if r["from_name"] == "box" and r["value"]["rectanglelabels"] == ["person"]]
    assert sorted((round(r["value"]["x"]), r["score"]) for r in people) == [(0, 0.9), (50, 0.8)]
    assert len({r["id"] for r in results}) == len(results)


def test_brush_masks_decode_to_the_image_size():
    config = label_config("brush.xml")
    results = post_predict(make_app().test_client(), [ls_task(1, data_uri(png_bytes(90, 70)))], config)
    brushes = [r for r in results[0]["result"] if r["type"] == "brushlabels"]
    assert len(brushes) == 4
    check_results_fit_config(results[0]["result"], config, 90, 70)


def test_region_descriptions_attach_to_their_rectangle():
    shipped = label_config("region_descriptions.xml")  # interactive only: preannotate="false" on its controls
    assert post_predict(make_app().test_client(), [ls_task(1, IMAGE_640)], shipped)[0]["result"] == []
    config = shipped.replace(' preannotate="false"', "")
    result = post_predict(make_app().test_client(), [ls_task(1, IMAGE_640)], config)[0]["result"]
    rectangles = {r["id"]: r for r in result if r["type"] == "rectanglelabels"}
    texts = [r for r in result if r["type"] == "textarea"]
    assert len(texts) == len(rectangles) == 3
    for text in texts:
        rect = rectangles[text["id"]]
        assert text["value"]["text"] == ["region [160, 120, 480, 360] of 640x480#0a141e"]
        assert text["value"]["x"] == rect["value"]["x"]


def test_thresholds_drop_regions_and_masks():
    model = FakeNextChat(regions_for={"person": [((0.1, 0.1, 0.5, 0.5), 0.2)], "car": [((0.1, 0.1, 0.5, 0.5), 0.4)]})
    client = make_app(model, score_threshold=0.3, mask_iou_threshold=0.5).test_client()
    result = post_predict(client, [ls_task(1, IMAGE_640)], BOXES)[0]["result"]
    by_label = {}
    for r in result:
        by_label.setdefault(r["value"][r["type"]][0], []).append(r["type"])
    assert "person" not in by_label  # 0.2 < SCORE_THRESHOLD
    assert by_label["car"] == ["rectanglelabels"]  # kept, but 0.4 < MASK_IOU_THRESHOLD: no polygon
    assert sorted(by_label["dog"]) == ["polygonlabels", "rectanglelabels"]


def test_referring_expression_stored_in_task_data():
    model = FakeNextChat()
    config = label_config("referring_prompt.xml")
    task = ls_task(1, IMAGE_640, prompt="the black dog near the door")
    result = post_predict(make_app(model).test_client(), [task], config)[0]["result"]
    assert ("ground", "the black dog near the door") in model.calls
    labels = [r["value"][r["type"]] for r in result if r["type"] == "rectanglelabels"]
    assert ["dog"] in labels


def test_grounded_caption_fills_the_caption_and_labels_its_phrases():
    config = label_config("grounded_caption.xml")
    result = post_predict(make_app().test_client(), [ls_task(1, IMAGE_640)], config)[0]["result"]
    captions = [r for r in result if r["from_name"] == "caption"]
    assert captions[0]["value"]["text"] == ["a man next to a red car (640x480#0a141e)"]
    phrases = {r["value"]["text"][0]: r["id"] for r in result if r["from_name"] == "phrase"}
    shapes = {r["id"]: r["value"].get("rectanglelabels") for r in result if r["type"] == "rectanglelabels"}
    assert shapes[phrases["a man"]] == ["person"] and shapes[phrases["a red car"]] == ["vehicle"]
    check_results_fit_config(result, config, 640, 480)


# ----------------------------------------------------------------------------- interactive
def test_drawn_box_gets_description_and_mask_under_a_new_id():
    model = FakeNextChat()
    config = label_config("region_descriptions.xml")
    results = post_predict(make_app(model).test_client(), [ls_task(4, IMAGE_640)], config, drawn_box_context())
    assert len(results) == 1
    result = results[0]["result"]
    rect = next(r for r in result if r["type"] == "rectanglelabels")
    text = next(r for r in result if r["type"] == "textarea")
    polygons = [r for r in result if r["type"] == "polygonlabels"]
    assert rect["id"] != "W4yQRdm34L" and text["id"] == rect["id"]
    assert (rect["value"]["x"], rect["value"]["width"], rect["value"]["rectanglelabels"]) == (10.0, 30.0, ["person"])
    assert text["value"]["text"] == ["region [64, 96, 256, 288] of 640x480#0a141e"]
    assert polygons and polygons[0]["value"]["polygonlabels"] == ["person"] and polygons[0]["id"] != rect["id"]
    assert [c[0] for c in model.calls] == ["describe", "segment"]
    check_results_fit_config(result, config, 640, 480)


def test_typed_prompt_with_label_prefix_and_echo():
    model = FakeNextChat()
    config = label_config("referring_prompt.xml")
    context = textarea_context("dog: the small dog on the left")
    result = post_predict(make_app(model).test_client(), [ls_task(1, IMAGE_640)], config, context)[0]["result"]
    assert ("ground", "the small dog on the left") in model.calls
    shapes = [r for r in result if r["type"] != "textarea"]
    assert shapes and all(r["value"][r["type"]] == ["dog"] for r in shapes)
    echo = [r for r in result if r["type"] == "textarea"]
    assert echo == [{"id": "_w2iFDLtHy", "from_name": "prompt", "to_name": "image", "type": "textarea",
                     "value": {"text": ["dog: the small dog on the left"]}}]


@pytest.mark.parametrize(("prompt", "label"), [("a man in a red shirt", "person"), ("the zebra", "object")])
def test_typed_prompt_label_from_phrase_or_catch_all(prompt, label):
    config = label_config("referring_prompt.xml")
    results = post_predict(make_app().test_client(), [ls_task(1, IMAGE_640)], config, textarea_context(prompt))
    labels = {r["value"][r["type"]][0] for r in results[0]["result"] if r["type"] != "textarea"}
    assert labels == {label}


def test_question_with_a_drawn_box_is_answered_with_regions():
    model = FakeNextChat()
    config = label_config("region_qa.xml")
    context = textarea_context("what is in [0]?", from_name="question")
    context["result"] += drawn_box_context()["result"]
    result = post_predict(make_app(model).test_client(), [ls_task(1, IMAGE_640)], config, context)[0]["result"]
    assert ("ask", "what is in [0]?", ((64.0, 96.0, 256.0, 288.0),)) in model.calls
    answer = next(r for r in result if r["from_name"] == "answer")
    assert answer["value"]["text"] == ["answer to 'what is in [0]?': the dog"]
    animal = next(r for r in result if r["type"] == "rectanglelabels")
    assert animal["value"]["rectanglelabels"] == ["animal"]
    phrase = next(r for r in result if r["from_name"] == "phrase")
    assert phrase["id"] == animal["id"] and phrase["value"]["text"] == ["the dog"]


# ----------------------------------------------------------------------------- /webhook
class RecordingExporter:
    def __init__(self):
        self.payloads = []

    def submit(self, payload):
        self.payloads.append(payload)


ANNOTATION_CREATED = {
    "action": "ANNOTATION_CREATED",
    "annotation": {"id": 1, "result": [
        {"id": "r1", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 640,
         "original_height": 480, "image_rotation": 0,
         "value": {"x": 5, "y": 5, "width": 20, "height": 20, "rotation": 0, "rectanglelabels": ["dog"]}}],
        "was_cancelled": False, "ground_truth": False, "task": 1, "project": 1},
    "project": {"id": 1, "title": "probe grounding", "label_config": BOXES, "model_version": "fake"},
    "task": {"id": 1, "data": {"image": "/data/local-files/?d=images/img0.png"}, "is_labeled": True},
}


def test_webhook_queues_annotations_for_export_and_ignores_other_events():
    exporter = RecordingExporter()
    client = make_app(exporter=exporter).test_client()
    started = time.monotonic()
    reply = client.post("/webhook", json=ANNOTATION_CREATED)
    assert time.monotonic() - started < 1
    assert reply.status_code == 200 and reply.get_json()["status"] == "queued"
    assert exporter.payloads == [ANNOTATION_CREATED]
    assert client.post("/webhook", json={"action": "PROJECT_UPDATED", "project": {}}).get_json() == {
        "status": "Unknown event"}
    assert client.post("/webhook", json={"action": "START_TRAINING"}).get_json()["status"] == "ignored"
    assert client.post("/webhook", data="{oops", content_type="application/json").status_code == 400


def test_webhook_without_exporter_is_ignored():
    reply = make_app().test_client().post("/webhook", json=ANNOTATION_CREATED)
    assert reply.status_code == 200 and reply.get_json()["status"] == "ignored"


def test_stage3_dir_wires_the_live_exporter(tmp_path):
    app = make_app(stage3_dir=str(tmp_path / "stage3"))
    polygon = {"id": "p1", "from_name": "polygon", "to_name": "image", "type": "polygonlabels",
               "original_width": 640, "original_height": 480, "image_rotation": 0,
               "value": {"points": [[10, 10], [50, 10], [50, 50]], "closed": True, "polygonlabels": ["dog"]}}
    annotation = {**ANNOTATION_CREATED["annotation"], "result": ANNOTATION_CREATED["annotation"]["result"] + [polygon]}
    task = {**ANNOTATION_CREATED["task"], "data": {"image": IMAGE_640}}
    payload = {**ANNOTATION_CREATED, "annotation": annotation, "task": task}
    reply = app.test_client().post("/webhook", json=payload)
    assert reply.get_json()["status"] == "queued"
    written = tmp_path / "stage3" / "res.jsonl"
    give_up = time.monotonic() + 10
    while not (written.exists() and written.read_text().strip()) and time.monotonic() < give_up:
        time.sleep(0.05)  # the exporter writes in its own thread
    records = [json.loads(line) for line in written.read_text().splitlines()]
    assert len(records) == 1 and records[0]["task_id"] == 1
