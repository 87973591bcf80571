"""Annotations made through a real Label Studio's API, and the expected stage-3 records.

`build_scenario(client, workdir)` creates a project (rectangles, polygons, brush masks, region texts),
uploads two images (one a phone JPEG with EXIF orientation 6), captures the project's webhooks,
creates annotations, updates one, deletes one, cancels one, and exports the project as JSON.
`expected_mask(...)` rasterises the exported Label Studio regions independently of backend.export.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from label_studio_sdk.converter.brush import decode_rle

from tests.export.helpers import (
    CONFIG_XML,
    brush_item,
    image_bytes,
    percent_to_px,
    polygon_item,
    rasterize_polygon,
    rect_item,
    text_item,
)

W, H = 640, 480
CAT_BODY = [(12.2, 14.6), (44.9, 11.3), (47.5, 66.1), (30.3, 71.8), (11.7, 60.2)]
CAT_TAIL = [(50.5, 58.5), (57.8, 58.9), (57.1, 69.7)]
SECOND_CAT = [(70.3, 10.1), (93.7, 12.2), (88.1, 40.4), (72.4, 37.9)]
FIRST_TEXT, UPDATED_TEXT = "the cat on the phone photo", "the corrected cat on the phone photo"
PHONE_FIRST = [(20.0, 20.0), (60.0, 22.0), (55.0, 70.0), (25.0, 65.0)]
PHONE_UPDATED = [(30.1, 25.2), (75.6, 28.3), (70.2, 80.4), (33.3, 77.7)]


def dog_mask() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    mask = ((xx - 470) ** 2 / 110**2 + (yy - 330) ** 2 / 80**2) < 1
    mask[320:340, 460:480] = False  # a hole
    return mask


@dataclass
class Scenario:
    project_id: int
    tasks: list = field(default_factory=list)  # the JSON export
    webhooks: list = field(default_factory=list)  # captured payloads, in arrival order
    annotation_ids: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)  # task id -> original image bytes


class WebhookSink:
    """A loopback HTTP server that records every webhook Label Studio posts."""

    def __init__(self):
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/webhook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for_annotation_events(self, count: int, timeout: float = 30.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(str(event.get("action", "")).startswith("ANNOTATION") for event in self.received) >= count:
                break
            time.sleep(0.1)
        return list(self.received)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def annotation_results() -> dict:
    """name -> result list, as an annotator would submit them."""
    size = {"width": W, "height": H}
    return {
        "street": [
            rect_item("r-cat", (11, 10, 47.5, 62.5), label="cat", **size),
            text_item("r-cat", ["the tabby cat under the table"],
                      {"x": 11, "y": 10, "width": 47.5, "height": 62.5}, **size),
            polygon_item("p-body", CAT_BODY, label="cat", **size),
            polygon_item("p-tail", CAT_TAIL, label="cat", **size),
            brush_item("b-dog", dog_mask(), label="dog"),
            text_item("b-dog", ["the brown dog", "dog lying on the right"], **size),
            polygon_item("p-cat2", SECOND_CAT, label="cat", **size),
            rect_item("r-lone", (2, 80, 10, 15), label="dog", **size),
        ],
        "phone": [
            polygon_item("p-phone", PHONE_FIRST, label="dog", **size), text_item("p-phone", [FIRST_TEXT], **size),
        ],
        "phone-updated": [
            polygon_item("p-phone", PHONE_UPDATED, label="dog", **size), text_item("p-phone", [UPDATED_TEXT], **size),
        ],
        "deleted": [polygon_item("p-gone", SECOND_CAT, label="dog", **size)],
    }


def build_scenario(client, workdir: Path) -> Scenario:
    project = client.create_project("stage-3 export", CONFIG_XML)
    scenario = Scenario(project["id"])
    sink = WebhookSink()
    try:
        client.request_json("POST", "/api/webhooks/", json={
            "project": project["id"], "url": sink.url, "send_payload": True, "send_for_all_actions": True})
        street, phone = workdir / "street.png", workdir / "phone.jpg"
        street.write_bytes(image_bytes(W, H, seed=11))
        phone.write_bytes(image_bytes(H, W, fmt="JPEG", orientation=6, seed=12))  # stored 480x640, shown 640x480
        street_id, phone_id = client.upload_files(project["id"], [street, phone])
        scenario.images = {street_id: street.read_bytes(), phone_id: phone.read_bytes()}
        results = annotation_results()
        ids = scenario.annotation_ids
        ids["street"] = client.create_annotation(street_id, results["street"])["id"]
        ids["phone"] = client.create_annotation(phone_id, results["phone"])["id"]
        client.request_json("PATCH", f"/api/annotations/{ids['phone']}/", json={"result": results["phone-updated"]})
        ids["deleted"] = client.create_annotation(street_id, results["deleted"])["id"]
        client.request_json("DELETE", f"/api/annotations/{ids['deleted']}/")
        ids["cancelled"] = client.request_json("POST", f"/api/tasks/{phone_id}/annotations/",
                                               json={"result": [], "was_cancelled": True})["id"]
        scenario.webhooks = sink.wait_for_annotation_events(6)  # 4 created, 1 updated, 1 deleted
        scenario.tasks = client.export_annotations(project["id"])
    finally:
        sink.close()
    return scenario


def ls_region_mask(item: dict) -> np.ndarray:
    """Rasterise one exported Label Studio region at its original size (not using backend code)."""
    width, height, value = item["original_width"], item["original_height"], item["value"]
    if "rle" in value:
        return np.asarray(decode_rle(value["rle"])).reshape(height, width, 4)[:, :, 3] > 127
    if "points" in value:
        return rasterize_polygon(percent_to_px(value["points"], width, height), height, width)
    x, y = value["x"] * width / 100, value["y"] * height / 100
    w, h = value["width"] * width / 100, value["height"] * height / 100
    return rasterize_polygon([(x, y), (x + w, y), (x + w, y + h), (x, y + h)], height, width)


def expected_mask(tasks: list, annotation_id: int, region_ids: str) -> np.ndarray:
    """The union of the exported regions a record names (merged records name 'a+b')."""
    for task in tasks:
        for annotation in task["annotations"]:
            if annotation["id"] == annotation_id:
                shapes = [item for item in annotation["result"]
                          if item["id"] in region_ids.split("+") and item["type"] != "textarea"]
                return np.logical_or.reduce([ls_region_mask(item) for item in shapes])
    raise AssertionError(f"annotation {annotation_id} is not in the export")


def polygon_extent(tasks: list, annotation_id: int, region_ids: str) -> list[float]:
    for task in tasks:
        for annotation in task["annotations"]:
            if annotation["id"] == annotation_id:
                points = [p for item in annotation["result"] if item["id"] in region_ids.split("+")
                          and "points" in item["value"] for p in percent_to_px(item["value"]["points"], W, H)]
                xs, ys = zip(*points)
                return [min(xs), min(ys), max(xs), max(ys)]
    raise AssertionError(f"annotation {annotation_id} is not in the export")
