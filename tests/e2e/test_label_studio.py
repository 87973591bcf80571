"""End to end against a real Label Studio 1.23.2 on loopback, with our backend and the tiny checkpoint.

One project per label_config/*.xml; each gets three tasks (an uploaded image, a Local Files image, an
http URL on a loopback server; for a valueList config each task holds two images of different sizes,
the second of the same kind, the uploaded task's second one over http), task data from
backend.dev.samples (per-task labels, prompts), the backend connected, and "Retrieve predictions" run.
Then every stored prediction is checked against its config as shown for its task, and interactive calls
shaped like the labeling UI's (a box drawn with the smart tool, clicks with the smart key point tool) are
sent through Label Studio's
/interactive-annotating.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from backend.dev.demo import LABEL_CONFIG_DIR, draw_sample_image, local_files_url
from backend.dev.samples import (
    SAMPLE_LABELS,
    accepts_file_upload,
    drawn_rectangle,
    is_multi_image,
    sample_task_data,
)
from backend.studio.client import LabelStudioClient, LabelStudioError
from tests.e2e.region_checks import REGION_TYPES, controls_for_task, read_controls, result_problems

pytestmark = pytest.mark.e2e

CONFIG_PATHS = sorted(LABEL_CONFIG_DIR.glob("*.xml"))
# configs that pre-annotate nothing by design (preannotate="false": interactive only)
INTERACTIVE_ONLY = {"region_descriptions"}
# task data that the prompt-driven configs read (key = the TextArea's name)
TEXT_INPUTS = {"prompt": "the red car", "question": "what is the person standing next to?"}
SIZES = {"upload": (640, 480), "local-files": (480, 360), "http": (360, 480)}
SECOND_SIZES = {"local-files": (300, 420), "http": (420, 300)}  # the second image of a multi-image task


@dataclass
class ProjectRun:
    config_path: Path
    project: dict
    controls: dict
    image_sizes: dict  # task id -> (width, height), or item_index -> (width, height) for a list of images
    task_kinds: dict  # task id -> "upload" | "local-files" | "http"
    ml_backend: dict
    predictions: list
    task_data: dict  # task id -> its data as stored


def make_images(folders: dict[str, Path], stem: str) -> dict[str, list[Path]]:
    """Generated images per task kind, each in the folder that kind is served from, sizes differ: one per kind,
    and a second local-files and http one (multi-image tasks)."""
    images = {kind: [draw_sample_image(folders[kind] / f"{stem}-{kind}.png", size, seed=index)]
              for index, (kind, size) in enumerate(SIZES.items())}
    for index, (kind, size) in enumerate(SECOND_SIZES.items()):
        images[kind].append(draw_sample_image(folders[kind] / f"{stem}-{kind}-2.png", size, seed=10 + index))
    return images


def uploaded_image(ls: LabelStudioClient, project_id: int, label_config: str, path: Path) -> tuple[int | None, dict]:
    """(task id, data) of a task made by uploading an image into the project; with more than one data key in
    the config Label Studio refuses that, so the image goes into a scratch project: (None, its task data)."""
    target = project_id
    if not accepts_file_upload(label_config):
        target = ls.create_project("e2e uploads", '<View><Image name="image" value="$image"/></View>')["id"]
    (task_id,) = ls.upload_files(target, [path])
    (task,) = [task for task in ls.list_tasks(target) if task["id"] == task_id]
    return (task_id if target == project_id else None), task["data"]


def run_project(ls: LabelStudioClient, config_path: Path, folders: dict[str, Path], label_studio, image_server,
                backend_url: str) -> ProjectRun:
    images = make_images(folders, config_path.stem)
    label_config = config_path.read_text()
    multi = is_multi_image(label_config)
    project = ls.create_project(f"e2e {config_path.stem}", label_config)
    ls.add_local_files_storage(project["id"], folders["local-files"])
    local = [local_files_url(path, label_studio.local_files_root) for path in images["local-files"]]
    http = [image_server.url_for(path) for path in images["http"]]
    upload_id, uploaded = uploaded_image(ls, project["id"], label_config, images["upload"][0])
    upload_url = next(value for value in uploaded.values() if isinstance(value, str))
    # every task gets its config's sample data (prompt, question, labels); a multi-image task two images
    task_paths = {"upload": images["upload"] + images["http"][1:], "local-files": images["local-files"],
                  "http": images["http"]}
    values = {"upload": [upload_url] + http[1:], "local-files": local, "http": http}
    if not multi:
        task_paths = {kind: paths[:1] for kind, paths in task_paths.items()}
        values = {kind: urls[:1] for kind, urls in values.items()}
    data = {kind: sample_task_data(label_config, urls, TEXT_INPUTS) for kind, urls in values.items()}
    if upload_id is None:
        (upload_id,) = ls.import_tasks(project["id"], [data["upload"]])
    else:
        ls.update_task_data(upload_id, {**uploaded, **data["upload"]})
    local_id, http_id = ls.import_tasks(project["id"], [data["local-files"], data["http"]])
    kinds = {upload_id: "upload", local_id: "local-files", http_id: "http"}
    sizes = {task_id: {index: _image_size(path) for index, path in enumerate(task_paths[kind])}
             for task_id, kind in kinds.items()}
    if not multi:
        sizes = {task_id: by_index[0] for task_id, by_index in sizes.items()}
    ml_backend = ls.connect_ml_backend(project["id"], backend_url)
    ls.retrieve_predictions(project["id"])
    predictions = ls.list_predictions(project_id=project["id"])
    stored = {task["id"]: task["data"] for task in ls.list_tasks(project["id"])}
    return ProjectRun(config_path, project, read_controls(label_config), sizes, kinds, ml_backend, predictions,
                      stored)


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


@pytest.fixture(scope="module")
def project_runs(label_studio, image_server, nextchat_backend, tmp_path_factory) -> dict[str, ProjectRun]:
    folders = {"upload": tmp_path_factory.mktemp("uploads"), "local-files": label_studio.local_files_root / "e2e",
               "http": image_server.root}
    ls = label_studio.client()
    return {path.stem: run_project(ls, path, folders, label_studio, image_server, nextchat_backend.url)
            for path in CONFIG_PATHS}


def test_every_label_config_loads_in_label_studio(label_studio):
    ls = label_studio.client()
    assert len(CONFIG_PATHS) >= 7, "label_config/ should hold the ready configs"
    for path in CONFIG_PATHS:
        xml = path.read_text()
        project = ls.create_project(f"load {path.stem}", xml)
        stored = ls.get_project(project["id"])
        assert stored["label_config"].strip() == xml.strip(), path.name
        assert set(read_controls(xml)) <= set(stored["parsed_label_config"]), path.name
    broken = CONFIG_PATHS[0].read_text().replace('toName="image"', 'toName="nosuch"', 1)
    with pytest.raises(LabelStudioError) as refused:
        ls.create_project("load broken", broken)
    assert refused.value.status == 400


def test_personal_access_token_is_swapped_for_an_access_token(label_studio):
    pat_client = label_studio.client(label_studio.personal_access_token)
    assert pat_client.auth_headers()["Authorization"].startswith("Bearer ")
    assert pat_client.request_json("GET", "/api/current-user/whoami")["email"] == label_studio.username


@pytest.mark.parametrize("stem", [path.stem for path in CONFIG_PATHS])
def test_backend_connects_and_every_task_gets_a_fitting_prediction(project_runs, nextchat_backend, stem):
    run = project_runs[stem]
    assert run.ml_backend["state"] == "CO", run.ml_backend
    by_task = {}
    for prediction in run.predictions:
        by_task.setdefault(prediction["task"], []).append(prediction)
    if stem in INTERACTIVE_ONLY:  # an empty prediction, or none stored
        assert not [item for p in run.predictions for item in p["result"]], run.predictions
        return
    assert set(by_task) == set(run.image_sizes), f"tasks without a stored prediction\n{nextchat_backend.log_tail()}"
    for task_id, predictions in by_task.items():
        kind = run.task_kinds[task_id]
        assert len(predictions) == 1, f"{kind} task {task_id}: {len(predictions)} predictions"
        prediction = predictions[0]
        result = prediction["result"]
        assert any(item["type"] in REGION_TYPES for item in result), (
            f"{stem}: {kind} task {task_id} got no region: {result}\n{nextchat_backend.log_tail()}")
        problems = result_problems(result, controls_for_task(run.controls, run.task_data[task_id]),
                                   run.image_sizes[task_id])
        assert not problems, f"{stem}: {kind} task {task_id}:\n" + "\n".join(problems)
        assert prediction["model_version"], prediction
        assert isinstance(prediction["score"], (int, float))


def test_all_result_types_are_exercised(project_runs):
    types = {item["type"] for run in project_runs.values() for p in run.predictions for item in p["result"]}
    assert {"rectanglelabels", "polygonlabels", "brushlabels", "bitmasklabels", "textarea", "choices"} <= types, types


def test_dynamic_labels_come_from_each_task(project_runs):
    run = project_runs["dynamic_labels"]
    task_labels = {item["value"] for item in SAMPLE_LABELS}
    for prediction in run.predictions:
        boxes = {label for item in prediction["result"] if item["from_name"] == "box"
                 for label in item["value"]["rectanglelabels"]}
        assert boxes == task_labels, prediction["result"]  # the random model finds something for every prompt


def test_multi_image_regions_are_on_their_own_page(project_runs):
    """Every page of each task got its regions, each region sized for its own page (sizes differ)."""
    run = project_runs["multi_image"]
    for prediction in run.predictions:
        pages = run.image_sizes[prediction["task"]]
        boxes = [item for item in prediction["result"] if item["from_name"] == "box"]
        assert {item["item_index"] for item in boxes} == set(pages)
        for item in boxes:
            assert (item["original_width"], item["original_height"]) == pages[item["item_index"]]
        per_page = [item for item in prediction["result"] if item["from_name"] == "page"]
        assert sorted(item["item_index"] for item in per_page) == sorted(pages)


def drawn_box_context(width: int, height: int, label: str) -> dict:
    """The context the labeling UI sends after a box is drawn with the smart tool (docs/label-studio.md)."""
    percent = {"x": 20.5, "y": 25.25, "width": 40.0, "height": 45.5}
    return {"result": [drawn_rectangle("DrawnBox01", "box", "image", percent, width, height, label)]}


@pytest.mark.parametrize(("stem", "mask_type"), [("all_in_one", "brushlabels"),
                                                 ("region_descriptions", "polygonlabels")])
def test_drawn_box_is_answered_with_a_description_and_a_mask(project_runs, label_studio, nextchat_backend,
                                                              stem, mask_type):
    run = project_runs[stem]
    task_id = next(t for t, kind in run.task_kinds.items() if kind == "upload")
    width, height = run.image_sizes[task_id]
    label = sorted(run.controls["box"].labels)[0]
    reply = label_studio.client().interactive_annotating(
        run.ml_backend["id"], task_id, drawn_box_context(width, height, label))
    assert "errors" not in reply, f"{reply}\n{nextchat_backend.log_tail()}"
    result = reply["data"]["result"]
    problems = result_problems(result, run.controls, (width, height))
    assert not problems, "\n".join(problems)
    descriptions = [item for item in result if item["from_name"] == "description"]
    assert descriptions and descriptions[0]["value"]["text"][0].strip(), result
    region_ids = {item["id"] for item in result if item["type"] in REGION_TYPES}
    assert descriptions[0]["id"] in region_ids and descriptions[0]["id"] != "DrawnBox01"
    assert any(item["type"] == mask_type for item in result), f"no {mask_type} in {result}"


def test_box_drawn_on_a_later_page_is_answered_on_that_page(project_runs, label_studio, nextchat_backend):
    run = project_runs["multi_image"]
    task_id = next(t for t, kind in run.task_kinds.items() if kind == "local-files")
    width, height = run.image_sizes[task_id][1]
    context = drawn_box_context(width, height, "car")
    context["result"][0]["item_index"] = 1  # the editor marks a region drawn on page 2 so
    reply = label_studio.client().interactive_annotating(run.ml_backend["id"], task_id, context)
    assert "errors" not in reply, f"{reply}\n{nextchat_backend.log_tail()}"
    result = reply["data"]["result"]
    assert result and {item.get("item_index") for item in result} == {1}
    assert not result_problems(result, run.controls, run.image_sizes[task_id])
    (box,) = [item for item in result if item["from_name"] == "box"]
    assert (box["original_width"], box["original_height"]) == (width, height)
    assert [item["id"] for item in result if item["from_name"] == "description"] == [box["id"]]


def click(width: int, height: int, x: float, y: float, positive: bool, label: str, index: int) -> dict:
    """A click with the smart key point tool as the labeling UI serializes it (LS 1.23.2's KeyPointRegion)."""
    return {"original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": 0.5, "keypointlabels": [label], "labels": [label]},
            "is_positive": positive, "id": f"Click{index:05d}", "from_name": "click", "to_name": "image",
            "type": "keypointlabels", "origin": "manual"}


@pytest.mark.parametrize(("stem", "mask_types"), [("click_to_mask", {"brushlabels"}),
                                                  ("all_in_one", {"brushlabels", "polygonlabels"})])
def test_clicks_are_answered_with_one_mask_on_every_mask_control(project_runs, label_studio, nextchat_backend,
                                                                  stem, mask_types):
    run = project_runs[stem]
    task_id = next(t for t, kind in run.task_kinds.items() if kind == "upload")
    width, height = run.image_sizes[task_id]
    ls = label_studio.client()
    for prediction in ls.list_predictions(task_id=task_id):  # the clicks land beside no predicted region
        ls.request_json("DELETE", f"/api/predictions/{prediction['id']}")
    context = {"result": [click(width, height, 40.0, 45.0, True, "object", 0),
                          click(width, height, 60.0, 55.0, True, "object", 1),
                          click(width, height, 50.0, 50.0, False, "object", 2)]}
    reply = ls.interactive_annotating(run.ml_backend["id"], task_id, context)
    assert "errors" not in reply, f"{reply}\n{nextchat_backend.log_tail()}"
    result = reply["data"]["result"]
    problems = result_problems(result, run.controls, (width, height))
    assert not problems, "\n".join(problems)
    kinds = [item["type"] for item in result]
    assert mask_types <= set(kinds) and kinds.count("brushlabels") == 1, f"one mask expected: {kinds}"
    assert all(item["value"][item["type"]] == ["object"] for item in result if item["type"] in REGION_TYPES)
    assert not {item["id"] for item in result} & {"Click00000", "Click00001", "Click00002"}
    if stem == "all_in_one":
        (box,) = [item for item in result if item["type"] == "rectanglelabels"]
        descriptions = [item for item in result if item["from_name"] == "description"]
        assert [item["id"] for item in descriptions] == [box["id"]] and descriptions[0]["value"]["text"][0].strip()


def test_a_click_on_a_predicted_region_comes_back_under_its_ids(project_runs, label_studio, nextchat_backend):
    from label_studio_sdk.converter.brush import decode_rle

    run = project_runs["all_in_one"]
    task_id = next(t for t, kind in run.task_kinds.items() if kind == "local-files")
    width, height = run.image_sizes[task_id]
    (prediction,) = [p for p in run.predictions if p["task"] == task_id]
    brushes = [item for item in prediction["result"] if item["type"] == "brushlabels"]
    assert brushes, prediction["result"]
    alpha = np.asarray(decode_rle(brushes[0]["value"]["rle"])).reshape(height, width, 4)[:, :, 3]
    rows, columns = np.nonzero(alpha)
    row, column = rows[len(rows) // 2], columns[len(rows) // 2]
    context = {"result": [click(width, height, (column + 0.5) / width * 100, (row + 0.5) / height * 100, True,
                                "object", 0)]}
    reply = label_studio.client().interactive_annotating(run.ml_backend["id"], task_id, context)
    assert "errors" not in reply, f"{reply}\n{nextchat_backend.log_tail()}"
    result = reply["data"]["result"]
    assert not result_problems(result, run.controls, (width, height))
    predicted_ids = {item["id"] for item in prediction["result"] if item["type"] in REGION_TYPES}
    returned = {item["id"] for item in result if item["type"] in REGION_TYPES}
    # Label Studio sent the task's prediction along, and the answer is under the clicked shape's id, so
    # accepting replaces it (the random weights' noise masks overlap their boxes too little to say which
    # other shapes are the same object)
    assert returned & predicted_ids, (returned, predicted_ids)
