"""/predict bodies as Label Studio sends big selections: never 413, task data budgeted, annotations skipped."""

from __future__ import annotations

import json

import pytest

from backend.http import predict_body as predict_body_module
from backend.http.json_scan import ScanError, scan_predict_body
from tests.backend.fakes import FakeNextChat, data_uri, label_config, ls_task, make_app, png_bytes, predict_body

BOXES = label_config("boxes_polygons.xml")
GOOD = data_uri(png_bytes(64, 48))


def brush_annotation(ints: int) -> dict:
    """An annotation as Label Studio embeds it: a brush result with a long RLE list."""
    return {"id": 1, "result": [{"id": "r1", "from_name": "brush", "to_name": "image", "type": "brushlabels",
                                 "value": {"format": "rle", "rle": list(range(256)) * (ints // 256),
                                           "brushlabels": ["car \"quoted\" {x} [y]"]}}],
            "was_cancelled": False, "lead_time": 1.5}


def heavy_task(task_id: int, ints: int = 40_000) -> dict:
    task = ls_task(task_id, GOOD, note='text with "quotes", \\ backslashes, {braces} and [brackets] é')
    task["annotations"] = [brush_annotation(ints)]
    task["predictions"] = [{"result": brush_annotation(ints)["result"], "score": 0.5}]
    task["drafts"] = [{"result": [], "user": "a@b"}]
    return task


@pytest.fixture(params=["parsed whole", "scanned"])
def body_path(request, monkeypatch):
    """Run each test on both readers: small bodies are parsed at once, big ones scanned."""
    if request.param == "scanned":
        monkeypatch.setattr(predict_body_module, "PARSE_WHOLE_BYTES", 0)
    return request.param


def post(client, body) -> list[dict]:
    reply = client.post("/predict", data=json.dumps(body), content_type="application/json")
    assert reply.status_code == 200, reply.get_data(as_text=True)
    return reply.get_json()["results"]


def test_embedded_annotations_do_not_count_against_the_data_budget(body_path):
    tasks = [heavy_task(i) for i in range(6)]
    body = predict_body(tasks, BOXES)
    assert len(json.dumps(body)) > 20 * 20_000  # far more than the budget below, nearly all annotations
    model = FakeNextChat()
    results = post(make_app(model, max_task_data_bytes=20_000).test_client(), body)
    assert len(results) == 6 and all(entry["result"] for entry in results)


def test_tasks_past_the_limits_are_answered_in_order_without_a_result(body_path, caplog):
    tasks = [heavy_task(i, ints=1024) for i in range(5)]
    task_data = len(json.dumps(tasks[0]["data"]))
    client = make_app(max_task_data_bytes=3 * task_data + 10).test_client()
    results = post(client, predict_body(tasks, BOXES))
    assert len(results) == 5
    assert [("result" in entry) for entry in results] == [True, True, True, False, False]
    assert all("MAX_TASK_DATA_BYTES" in entry["error"] for entry in results[3:])
    assert "read 3 of 5 tasks" in caplog.text and "batch --from-project" in caplog.text
    few = post(make_app(max_tasks_per_request=2).test_client(), predict_body(tasks, BOXES))
    assert [("result" in entry) for entry in few] == [True, True, False, False, False]


def test_an_interactive_call_gets_its_regions_and_a_batch_only_task_data(body_path, monkeypatch):
    seen = []
    from backend.predict import predictor

    original = predictor.Predictor.predict

    def spy(self, tasks, *args, **kwargs):
        seen.extend(tasks)
        return original(self, tasks, *args, **kwargs)

    monkeypatch.setattr(predictor.Predictor, "predict", spy)
    client = make_app().test_client()
    post(client, predict_body([heavy_task(1)], BOXES))
    post(client, predict_body([heavy_task(2), heavy_task(3)], BOXES))
    # one task (an interactive call): the regions a click may fall on come along; a batch: id and data only
    assert [sorted(task) for task in seen] == [["annotations", "data", "drafts", "id", "predictions"],
                                               ["data", "id"], ["data", "id"]]
    assert seen[0]["data"]["note"].endswith("[brackets] é") and seen[1]["id"] == 2


def test_raw_body_past_the_hard_ceiling_is_still_413(body_path):
    client = make_app(max_request_bytes=50_000).test_client()
    reply = client.post("/predict", data=json.dumps(predict_body([heavy_task(1)], BOXES)),
                        content_type="application/json")
    assert reply.status_code == 413 and "MAX_REQUEST_BYTES" in reply.get_json()["error"]


@pytest.mark.parametrize(("text", "reason"), [
    ('{"tasks": [1, {"id": 1, "data": {}}], "label_config": "x"}', "task"),
    ('{"tasks": [{"id": 1}], "label_config": "x"}', "tasks[0] has no 'data' object"),
    ('{"tasks": [{"id": 1, "data": {}}', "malformed JSON"),
    ('{"tasks": [{"id": 1, "data": {}]}', "malformed JSON"),
    ('{"tasks": []} trailing', "malformed JSON"),
    ('["tasks"]', "JSON object"),
    ('{"tasks": "none", "label_config": "x"}', "'tasks' must be a list"),
    ('{"tasks": [], "label_config": "x"}', "'tasks' is empty"),
])
def test_malformed_bodies_are_one_line_400(body_path, text, reason):
    reply = make_app().test_client().post("/predict", data=text, content_type="application/json")
    assert reply.status_code == 400 and reason in reply.get_json()["error"], reply.get_json()
    assert "\n" not in reply.get_json()["error"]


def test_scan_finds_the_same_values_json_does():
    body = predict_body([heavy_task(7, ints=512), ls_task(8, GOOD)], BOXES, context={"result": []})
    body["label_config"] = 'quote " and \\" and } ] { ['
    raw = json.dumps(body, indent=2).encode()
    spans = scan_predict_body(raw)
    assert set(spans.top) == {"project", "label_config", "params"}
    for key, (start, end) in spans.top.items():
        assert json.loads(raw[start:end]) == body[key]
    assert len(spans.tasks) == 2
    for task, original in zip(spans.tasks, body["tasks"]):
        for key, (start, end) in task.values.items():
            assert json.loads(raw[start:end]) == original[key]
    every = {"id", "data", "drafts", "annotations", "predictions"}
    assert set(spans.tasks[0].values) == every and set(spans.tasks[1].values) == every - {"drafts"}


def test_scan_refuses_what_is_not_one_object():
    for text in (b"[]", b'{"a": 1} {"b": 2}', b'{"a": [1, 2}', b'{"a": "unterminated}'):
        with pytest.raises(ScanError):
            scan_predict_body(text)
    deep = b'{"tasks": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    with pytest.raises(ScanError, match="nested too deeply"):
        scan_predict_body(deep)
