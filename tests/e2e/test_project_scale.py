"""Label Studio at project scale, against a real Label Studio 1.23 (tests/ls_fixture.py) and the tiny model.

* `batch --from-project` pre-labels a project of 200 tasks (local files read through Label Studio,
  uploads, a broken http URL): interrupted, rerun to resume, the broken task reported, predictions
  stored under the printed version, which the server gives too (so "Retrieve predictions" skips them);
* "Retrieve predictions" on tasks whose embedded annotations are far past the byte cap: no 413, what
  fits is stored, a second retrieve gets the rest;
* editing a label's prompt changes the version and retrieving again recomputes;
* extra params typed on Connect model change a threshold for that project only;
* /webhook with and without WEBHOOK_TOKEN.
"""

from __future__ import annotations

import json
import re

import pytest
import requests

from backend.batch import main as batch_main
from backend.dev.demo import draw_sample_image, local_files_url
from backend.dev.harness import free_port, start_backend
from backend.studio.client import LabelStudioError

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "e2e-webhook-token-0123"
TASK_DATA_CAP = 4000
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="box" toName="image">
    <Label value="car" prompt="a red car"/><Label value="dog"/>
  </RectangleLabels>
  <PolygonLabels name="polygon" toName="image">
    <Label value="car" prompt="a red car"/><Label value="dog"/>
  </PolygonLabels>
</View>"""
BRUSH = '  <BrushLabels name="brush" toName="image"><Label value="car"/></BrushLabels>\n'
BRUSH_CONFIG = CONFIG.replace("</View>", BRUSH + "</View>")


@pytest.fixture(scope="module")
def backend(label_studio, image_server, random_tiny_checkpoint, tmp_path_factory):
    """Our backend with a small task-data cap, a webhook token, live stage-3 export and MODEL_DIR."""
    root = tmp_path_factory.mktemp("scale-backend")
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
           "ALLOWED_IMAGE_HOSTS": image_server.host_port, "MAX_TASK_DATA_BYTES": str(TASK_DATA_CAP),
           "WEBHOOK_TOKEN": WEBHOOK_TOKEN, "STAGE3_DIR": str(root / "stage3"), "MODEL_DIR": str(root / "models"),
           "ML_TIMEOUT_PREDICT": "300", "OMP_NUM_THREADS": "1"}
    process, url = start_backend(random_tiny_checkpoint, random_tiny_checkpoint / "vision_tower", free_port(),
                                 root / "backend.log", env_overrides=env, timeout_s=300)
    try:
        yield url, process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def images(label_studio):
    """4 images: the model caches the last 4 it encoded, so tasks sharing them cost little on CPU."""
    folder = label_studio.local_files_root / "scale"
    return [draw_sample_image(folder / f"img{i}.png", (160 + 8 * i, 120), seed=i) for i in range(4)]


@pytest.fixture
def one_torch_thread():
    """One torch thread in this process (two threads fighting for two shared cores are far slower)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def predictions_by_task(ls, project_id) -> dict[int, list[dict]]:
    found: dict[int, list[dict]] = {}
    for prediction in ls.list_predictions(project_id=project_id):
        found.setdefault(prediction["task"], []).append(prediction)
    return found


class InterruptAfter:
    """The tiny model, interrupted (like Ctrl-C) at its call number `calls + 1`."""

    def __init__(self, inner, calls: int):
        self.inner, self.left = inner, calls

    def ground_many(self, *args, **kwargs):
        if self.left == 0:
            raise KeyboardInterrupt("simulated Ctrl-C")
        self.left -= 1
        return self.inner.ground_many(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_batch_from_project_prelabels_200_tasks_resumes_and_skips_a_broken_image(
        label_studio, image_server, images, backend, random_tiny_checkpoint, tmp_path, monkeypatch, capsys,
        one_torch_thread):
    from model import NextChat

    ls = label_studio.client(label_studio.personal_access_token)
    project = ls.create_project("scale: batch --from-project", CONFIG)
    ls.add_local_files_storage(project["id"], images[0].parent)
    data = [{"image": local_files_url(images[i // 49], label_studio.local_files_root)} for i in range(196)]
    data.insert(49, {"image": f"{image_server.url}/no-such-image.png"})
    task_ids = ls.import_tasks(project["id"], data) + ls.upload_files(project["id"], images[:3])
    broken_id = task_ids[49]
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.personal_access_token,
           "ALLOWED_IMAGE_HOSTS": image_server.host_port}
    argv = ["--from-project", str(project["id"]), "--state", str(tmp_path / "state.jsonl"), "--no-progress",
            "--checkpoint", str(random_tiny_checkpoint), "--vision-tower", str(random_tiny_checkpoint / "vision_tower"),
            "--device", "cpu", "--dtype", "fp32"]
    tiny = NextChat.from_pretrained(random_tiny_checkpoint, vision_tower=random_tiny_checkpoint / "vision_tower")
    monkeypatch.setattr("backend.batch.task_labeler.load_model", lambda settings: InterruptAfter(tiny, 120))
    with pytest.raises(KeyboardInterrupt):
        batch_main(argv, env=env)
    assert len(predictions_by_task(ls, project["id"])) == 100  # two bulk chunks of 50 were sent before Ctrl-C

    monkeypatch.setattr("backend.batch.task_labeler.load_model", lambda settings: tiny)
    capsys.readouterr()
    assert batch_main([*argv, "--select-version"], env=env) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert (summary["already_done"], summary["labelled"], summary["failed"], summary["uploaded"]) == (120, 79, 1, 99)
    assert f"failed: task {broken_id}: bad image: HTTP 404" in err
    version = re.search(r"uses model version (\S+)", err).group(1)
    assert version == summary["model_version"] and "+cfg." in version

    stored = predictions_by_task(ls, project["id"])
    assert set(stored) == set(task_ids) - {broken_id}
    assert all(len(found) == 1 and found[0]["model_version"] == version and found[0]["result"]
               for found in stored.values())
    assert ls.get_project(project["id"])["model_version"] == version

    # the server gives these predictions the same version, so "Retrieve predictions" only sends the broken task
    ml_backend = ls.connect_ml_backend(project["id"], backend[0])
    assert ml_backend["model_version"] == version
    ls.retrieve_predictions(project["id"])
    after = predictions_by_task(ls, project["id"])
    assert len(after) == 200 and all(len(after[task_id]) == 1 for task_id in task_ids)
    assert after[broken_id][0]["result"] == []

    one = {"conjunction": "and", "items": [{"filter": "filter:tasks:id", "operator": "equal", "type": "Number",
                                            "value": task_ids[0]}]}
    filtered = [*argv[:3], str(tmp_path / "filtered.jsonl"), *argv[4:], "--filter", json.dumps(one)]
    assert batch_main(filtered, env=env) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]["labelled"] == 1


def big_brush_annotation(ints: int) -> list[dict]:
    return [{"id": "brush1", "from_name": "brush", "to_name": "image", "type": "brushlabels",
             "original_width": 160, "original_height": 120, "image_rotation": 0,
             "value": {"format": "rle", "rle": [(7 * i) % 256 for i in range(ints)], "brushlabels": ["car"]}}]


def test_retrieve_predictions_past_the_byte_cap_stores_what_fits_and_never_413(label_studio, images, backend):
    url, process = backend
    ls = label_studio.client()
    project = ls.create_project("scale: big annotations", BRUSH_CONFIG)
    ls.add_local_files_storage(project["id"], images[0].parent)
    note = "n" * 1000  # each task's data is ~1.1 KB: 3 fit in the 4000-byte cap
    task_ids = ls.import_tasks(project["id"], [{"image": local_files_url(images[i % 2], label_studio.local_files_root),
                                                "note": note} for i in range(8)])
    for task_id in task_ids:  # ~700 KB of brush RLE embedded in every task Label Studio sends
        ls.create_annotation(task_id, big_brush_annotation(200_000))
    ls.connect_ml_backend(project["id"], url)
    ls.retrieve_predictions(project["id"])
    first = predictions_by_task(ls, project["id"])
    assert len(first) == 3, process.log_tail()
    assert "read 3 of 8 tasks (MAX_TASK_DATA_BYTES=4000)" in process.log_tail(200)
    assert " 413 " not in process.log_tail(200)
    ls.retrieve_predictions(project["id"])  # Label Studio sends only the 5 still without this version
    ls.retrieve_predictions(project["id"])
    assert set(predictions_by_task(ls, project["id"])) == set(task_ids)


def test_editing_a_prompt_changes_the_version_and_retrieving_recomputes(label_studio, images, backend):
    url, _ = backend
    ls = label_studio.client()
    project = ls.create_project("scale: prompt edit", CONFIG)
    ls.add_local_files_storage(project["id"], images[0].parent)
    task_ids = ls.import_tasks(project["id"], [{"image": local_files_url(images[i], label_studio.local_files_root)}
                                               for i in range(2)])
    ml_backend = ls.connect_ml_backend(project["id"], url)
    ls.retrieve_predictions(project["id"])
    ls.retrieve_predictions(project["id"])  # same version: nothing recomputed
    before = predictions_by_task(ls, project["id"])
    assert all(len(found) == 1 for found in before.values()) and set(before) == set(task_ids)
    old_version = before[task_ids[0]][0]["model_version"]

    ls.request_json("PATCH", f"/api/projects/{project['id']}",
                    json={"label_config": CONFIG.replace('prompt="a red car"', 'prompt="a small red car"')})
    ls.retrieve_predictions(project["id"])
    after = predictions_by_task(ls, project["id"])
    versions = {task_id: sorted(p["model_version"] for p in found) for task_id, found in after.items()}
    new_version = (set(versions[task_ids[0]]) - {old_version}).pop()
    assert all(len(found) == 2 and old_version in found for found in versions.values())
    assert new_version.split("+cfg.")[0] == old_version.split("+cfg.")[0]
    assert ls.request_json("GET", f"/api/ml/{ml_backend['id']}")["model_version"] == new_version
    assert requests.get(f"{url}/versions", timeout=10).json()["projects"][str(project["id"])] == new_version


def test_extra_params_on_connect_model_change_a_threshold_for_that_project_only(label_studio, images, backend):
    url, _ = backend
    ls = label_studio.client()
    runs = {}
    for name, extra in (("strict", '{"score_threshold": 1.0}'), ("plain", None)):
        project = ls.create_project(f"scale: extra params {name}", CONFIG)
        ls.add_local_files_storage(project["id"], images[0].parent)
        ls.import_tasks(project["id"], [{"image": local_files_url(images[i], label_studio.local_files_root)}
                                        for i in range(2)])
        ls.connect_ml_backend(project["id"], url, extra_params=extra)  # the text the Connect model box holds
        ls.retrieve_predictions(project["id"])
        runs[name] = [p for found in predictions_by_task(ls, project["id"]).values() for p in found]
    assert len(runs["strict"]) == len(runs["plain"]) == 2
    assert all(p["result"] == [] for p in runs["strict"])  # no region reaches a score of 1.0
    assert all(p["result"] for p in runs["plain"])
    assert runs["strict"][0]["model_version"] != runs["plain"][0]["model_version"]

    project = ls.create_project("scale: bad extra params", CONFIG)
    with pytest.raises(LabelStudioError):  # Label Studio refuses to connect: /setup answered 400
        ls.connect_ml_backend(project["id"], url, extra_params='{"score_treshold": 0.5}')


def test_webhook_needs_the_token_label_studio_is_given(label_studio, images, backend):
    url, _ = backend
    ls = label_studio.client()
    event = {"action": "ANNOTATION_CREATED", "annotation": {"id": 1}, "project": {"id": 1}, "task": {"id": 1}}
    refused = requests.post(f"{url}/webhook", json=event, timeout=10)
    assert refused.status_code == 401 and "X-Webhook-Token" in refused.json()["error"]
    queued_before = requests.get(f"{url}/metrics", timeout=10).json().get("webhooks_queued", 0)

    project = ls.create_project("scale: webhook", CONFIG)
    ls.add_local_files_storage(project["id"], images[0].parent)
    (task_id,) = ls.import_tasks(project["id"], [{"image": local_files_url(images[0], label_studio.local_files_root)}])
    ls.connect_ml_backend(project["id"], url)
    (webhook,) = [hook for hook in ls.list_webhooks(project["id"]) if hook["url"].startswith(url)]
    box = {"id": "b1", "from_name": "box", "to_name": "image", "type": "rectanglelabels", "original_width": 160,
           "original_height": 120, "value": {"x": 10, "y": 10, "width": 30, "height": 30, "rotation": 0,
                                            "rectanglelabels": ["car"]}}
    ls.create_annotation(task_id, [box])  # sent without the header: refused
    metrics = requests.get(f"{url}/metrics", timeout=10).json()
    assert metrics.get("webhooks_queued", 0) == queued_before and metrics["unauthorized_webhooks"] >= 2
    ls.set_webhook_headers(webhook["id"], {"X-Webhook-Token": WEBHOOK_TOKEN})
    ls.create_annotation(task_id, [box])
    assert requests.get(f"{url}/metrics", timeout=10).json()["webhooks_queued"] >= queued_before + 1
