"""The stage-3 loop pays off: corrected masks of a style the shipped toy model segments badly, fine-tuned on
from Label Studio, make its masks measurably better.

Toy-world scenes in the generator's ``checkered`` style (every other square of an object's body near-white;
the toy model only ever saw flat colours: prompted with the true boxes it segments these at cIoU 0.71 against
0.84 for the same scenes drawn plain, and its category grounding finds 8 of their 17 objects against 12) are
uploaded to a real Label Studio 1.23.2 and pre-annotated by the shipped toy model (base version). A box is
drawn on every object through Label Studio's interactive endpoint (the smart rectangle) and the polygons the
backend answers are kept. Then the tasks are "corrected": each object's true outline as a polygon, its
referring expression in the region's TextArea. Label Studio's webhooks carry the annotations to the backend's
live export, "Start Training" runs stage 3, the job publishes a new version, the boxes are drawn again and
"Retrieve predictions" stores that version's pre-annotations. Polygons are rasterised and compared with the
truth (benchmarks.toy_metrics' rules), on the corrected tasks themselves (what the team labels again next).
Measured here: the drawn boxes' polygons 0.71 -> 0.80 cIoU (the job's own training split 0.50 -> 0.80),
asserted as a gain of at least MIN_GAIN. Pre-annotation polygons stay at 0.34: stage 3 trains the mask
decoder and the seg prompt only, and most of what pre-annotation misses on these scenes is objects whose box
stage 1-2's model does not find; asserted not to fall by more than MAX_PREANNOTATION_LOSS.
"""

from __future__ import annotations

import pytest
import requests

from backend.dev.demo import TOY_CHECKPOINT
from backend.dev.harness import free_port, start_backend
from backend.dev.samples import drawn_box
from backend.studio.client import LabelStudioError
from backend.studio.geometry import (
    mask_to_polygons,
    pixel_points_to_percent,
)
from benchmarks.toy_metrics import label_polygon_counts, polygon_mask_counts
from model.toy_world import make_scene
from tests.e2e.waiting import wait_until

pytestmark = pytest.mark.e2e

LABELS = ("car", "person", "dog", "tree", "traffic light", "puddle", "ball")
LABEL_TAGS = "".join(f'<Label value="{label}"/>' for label in LABELS)
CONFIG_XML = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image" smart="true">""" + LABEL_TAGS + """</RectangleLabels>
  <PolygonLabels name="poly" toName="image">""" + LABEL_TAGS + """
  </PolygonLabels>
  <TextArea name="expression" toName="image" perRegion="true" editable="true" rows="1"/>
</View>"""
SEED, SCENES, LONG_SIDE, STYLE = 77, 6, 320, "checkered"
TRAIN_ENV = {
    "TRAIN_SETTLE_S": "1", "TRAIN_COOLDOWN_S": "0", "TRAIN_MIN_NEW_RECORDS": "1", "TRAIN_MAX_STEPS": "60",
    "TRAIN_BATCH_SIZE": "4", "TRAIN_LR": "1e-3", "TRAIN_VAL_FRACTION": "0", "TRAIN_LOSS": "clean",
}
MIN_GAIN = 0.05
MAX_PREANNOTATION_LOSS = 0.02   # the boxes are stage 1-2's: stage 3 cannot find a missed object



@pytest.fixture(scope="module")
def toy_training_backend(label_studio, tmp_path_factory):
    root = tmp_path_factory.mktemp("toy-training")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
           "STAGE3_DIR": str(root / "stage3"), "MODEL_DIR": str(root / "model"), **TRAIN_ENV}
    try:
        process, url = start_backend(TOY_CHECKPOINT, TOY_CHECKPOINT / "vision_tower", free_port(),
                                     root / "backend.log", env_overrides=env, timeout_s=300)
    except LabelStudioError as error:
        pytest.fail(f"the backend did not start: {error}", pytrace=False)
    try:
        yield url, root, process
    finally:
        process.stop()


def corrected_result(scene) -> list[dict]:
    """Each object's true outline (PolygonLabels) and its first expression (the region's TextArea)."""
    items = []
    for index, obj in enumerate(scene.objects):
        polygons = mask_to_polygons(obj.mask)
        if not polygons:
            continue
        points = pixel_points_to_percent(max(polygons, key=len), scene.width, scene.height)
        base = {"id": f"o{index}", "to_name": "image", "original_width": scene.width,
                "original_height": scene.height, "image_rotation": 0}
        items.append({**base, "from_name": "poly", "type": "polygonlabels",
                      "value": {"points": points, "closed": True, "polygonlabels": [obj.category]}})
        items.append({**base, "from_name": "expression", "type": "textarea",
                      "value": {"points": points, "closed": True, "text": [obj.expressions[0]]}})
    return items


def polygon_ciou(scenes: dict, predictions: list[dict], version: str) -> float:
    """cIoU over (task, label) of the version's polygons against the truth (benchmarks.toy_metrics' rule)."""
    intersection = union = 0
    for prediction in predictions:
        if prediction["model_version"] == version:
            for label in LABELS:
                inter, joint = label_polygon_counts(prediction["result"], label, scenes[prediction["task"]])
                intersection, union = intersection + inter, union + joint
    return intersection / max(1, union)


def drawn_box_ciou(ls, ml_backend_id: int, task_scenes: dict) -> float:
    """cIoU over every object of the polygons the backend answers, through Label Studio's interactive endpoint,
    for a box drawn on the object (its true box, labelled with its category) against its true mask."""
    intersection = union = 0
    for task_id, scene in task_scenes.items():
        for index, obj in enumerate(scene.objects):
            drawn = drawn_box(f"drawn{index}", "box", "image", obj.box, scene.width, scene.height, obj.category)
            reply = ls.interactive_annotating(ml_backend_id, task_id, {"result": [drawn]})
            assert "errors" not in reply, reply
            inter, joint = polygon_mask_counts(reply["data"]["result"], obj.category, obj.mask)
            intersection, union = intersection + inter, union + joint
    return intersection / max(1, union)


def test_finetuning_on_corrected_masks_improves_them(label_studio, toy_training_backend, tmp_path):
    url, root, process = toy_training_backend
    ls = label_studio.client()
    project = ls.create_project("toy stage-3 loop", CONFIG_XML)
    scenes = [make_scene(SEED, index, long_side=LONG_SIDE, style=STYLE) for index in range(SCENES)]
    paths = []
    for scene in scenes:
        paths.append(tmp_path / f"{STYLE}-{scene.index}.png")
        scene.image.save(paths[-1])
    task_scenes = dict(zip(ls.upload_files(project["id"], paths), scenes))
    ml_backend = ls.connect_ml_backend(project["id"], url)
    ls.retrieve_predictions(project["id"])
    base = ls.request_json("GET", f"/api/ml/{ml_backend['id']}")["model_version"]
    before = polygon_ciou(task_scenes, ls.list_predictions(project_id=project["id"]), base)
    drawn_before = drawn_box_ciou(ls, ml_backend["id"], task_scenes)

    for task_id, scene in task_scenes.items():
        ls.create_annotation(task_id, corrected_result(scene))
    records = sum(len(s.objects) for s in scenes)
    wait_until(lambda: (root / "stage3" / "res.jsonl").is_file()
               and len((root / "stage3" / "res.jsonl").read_text().splitlines()) == records,
               120, "the live export of every corrected region", process.log_tail)
    ls.request_json("POST", f"/api/ml/{ml_backend['id']}/train")
    status = wait_until(lambda: (s := requests.get(url + "/train/status", timeout=30).json())["state"] == "idle"
                        and s["history"] and s, 600, "the training job", process.log_tail)
    job = status["history"][0]
    assert job["state"] == "published", job

    ls.retrieve_predictions(project["id"])
    version = ls.request_json("GET", f"/api/ml/{ml_backend['id']}")["model_version"]
    assert version != base
    after = polygon_ciou(task_scenes, ls.list_predictions(project_id=project["id"]), version)
    drawn_after = drawn_box_ciou(ls, ml_backend["id"], task_scenes)
    print(f"drawn boxes' polygons cIoU {drawn_before:.3f} -> {drawn_after:.3f}; pre-annotation polygons "
          f"{before:.3f} -> {after:.3f}; the job: {job.get('metrics')}")   # pytest -s shows it
    assert drawn_after >= drawn_before + MIN_GAIN, f"drawn boxes' polygon cIoU {drawn_before:.3f} -> {drawn_after:.3f}"
    assert after >= before - MAX_PREANNOTATION_LOSS, f"pre-annotation polygon cIoU {before:.3f} -> {after:.3f}"
