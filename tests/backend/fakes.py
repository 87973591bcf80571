"""Test doubles and Label Studio-shaped bodies for the backend tests.

`FakeNextChat` implements the documented model API (README, model/nextchat.py) with deterministic, image-dependent
output, so region/result logic can be checked exactly (the tiny random checkpoint finds no regions).
`ImageServer` is a loopback-only HTTP server with scripted routes and a hit log.
"""

from __future__ import annotations

import base64
import http.server
import io
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from backend.dev.samples import drawn_rectangle

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL_CONFIGS = REPO_ROOT / "label_config"


def label_config(name: str) -> str:
    return (LABEL_CONFIGS / name).read_text()


# ----------------------------------------------------------------------------- images
def png_bytes(width: int = 64, height: int = 48, color=(200, 30, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


# ----------------------------------------------------------------------------- model double
@dataclass
class FakeRegion:
    box: tuple[float, float, float, float]
    mask: np.ndarray
    score: float
    phrase: str


@dataclass
class FakeCaption:
    text: str
    regions: list = field(default_factory=list)


def image_signature(image: Image.Image) -> str:
    """Something every output carries so tests can tell which image produced it."""
    r, g, b = image.getpixel((0, 0))[:3]
    return f"{image.width}x{image.height}#{r:02x}{g:02x}{b:02x}"


class FakeNextChat:
    """Deterministic stand-in for model.NextChat.

    `regions_for` maps an expression to a list of (relative box, score) — relative boxes are
    fractions of the image size; unknown expressions find one region in the image's centre.
    `delay_s` makes every call slow; `raise_on` maps a method name to an exception to raise.
    """

    model_version = "fake-nextchat-1"
    CLICK_SQUARE_PX = 8  # a click's effect on the mask: a square of this side around it

    def __init__(self, regions_for=None, delay_s: float = 0.0, raise_on=None, default_score: float = 0.9):
        self.regions_for = regions_for or {}
        self.delay_s = delay_s
        self.raise_on = dict(raise_on or {})
        self.default_score = default_score
        self.calls: list[tuple] = []
        self._lock = threading.Lock()
        self._should_stop = lambda: False

    def _enter(self, method: str, *args) -> None:
        with self._lock:
            self.calls.append((method, *args))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self._should_stop():  # as the real model, which checks before every decode step
            from model.decoding import GenerationStopped

            raise GenerationStopped("stopped by the caller's deadline")
        error = self.raise_on.get(method)
        if error is not None:
            raise error

    def _region(self, image, relative_box, score, phrase) -> FakeRegion:
        w, h = image.size
        x0, y0, x1, y1 = relative_box
        box = (x0 * w, y0 * h, x1 * w, y1 * h)
        mask = np.zeros((h, w), dtype=bool)
        mask[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])] = True
        return FakeRegion(box=box, mask=mask, score=score, phrase=phrase)

    def ground(self, image, expression):
        self._enter("ground", expression)
        specs = self.regions_for.get(expression, [((0.25, 0.25, 0.75, 0.75), self.default_score)])
        return [self._region(image, rel, score, expression) for rel, score in specs]

    def ground_many(self, image, expressions):
        self._enter("ground_many", tuple(expressions))
        saved, self.delay_s = self.delay_s, 0.0
        try:
            return [self.ground(image, expression) for expression in expressions]
        finally:
            self.delay_s = saved

    def describe(self, image, box):
        self._enter("describe", tuple(box))
        return f"region {[round(v) for v in box]} of {image_signature(image)}"

    def caption(self, image):
        self._enter("caption")
        regions = [self._region(image, (0.1, 0.1, 0.5, 0.9), 0.8, "a man"),
                   self._region(image, (0.5, 0.2, 0.9, 0.6), 0.7, "a red car")]
        return FakeCaption(f"a man next to a red car ({image_signature(image)})", regions)

    def ask(self, image, question, boxes=None):
        self._enter("ask", question, tuple(tuple(b) for b in (boxes or [])))
        regions = [self._region(image, (0.2, 0.2, 0.6, 0.6), 0.8, "the dog")]
        return FakeCaption(f"answer to {question!r}: the dog", regions)

    @contextmanager
    def stop_when(self, should_stop):
        """As model.NextChat.stop_when: within the block, a call checks ``should_stop`` after its delay."""
        previous, self._should_stop = self._should_stop, should_stop
        try:
            yield self
        finally:
            self._should_stop = previous

    def segment(self, image, box=None, points=None, point_labels=None):
        clicks, labels = self._check_clicks(image, points, point_labels)
        self._enter("segment", None if box is None else tuple(box), tuple(clicks), tuple(labels))
        if box is None and not clicks:
            raise ValueError("segment needs a box, a location or at least one point; got none and 0 points")
        w, h = image.size
        if box is None:
            around = (min(x for x, _ in clicks), min(y for _, y in clicks), max(x for x, _ in clicks),
                      max(y for _, y in clicks))  # the model's box for an empty mask
            region = FakeRegion(box=around, mask=np.zeros((h, w), dtype=bool), score=0.5, phrase="")
        else:
            region = self._region(image, (box[0] / w, box[1] / h, box[2] / w, box[3] / h), 0.6, "")
        return self._with_clicks(region, clicks, labels, keep_box=box is not None)

    def refine(self, image, expression, points, point_labels=None, region_index=0):
        """As model.NextChat.refine: region ``region_index`` of ``ground(image, expression)`` (not logged as a
        ground call) with the clicks applied as in :meth:`segment`."""
        clicks, labels = self._check_clicks(image, points, point_labels)
        self._enter("refine", expression, tuple(clicks), tuple(labels), region_index)
        specs = self.regions_for.get(expression, [((0.25, 0.25, 0.75, 0.75), self.default_score)])
        if not 0 <= region_index < len(specs):
            raise ValueError(f"{expression!r} located {len(specs)} region(s) on this image; "
                             f"region_index {region_index} is not one of them")
        relative_box, score = specs[region_index]
        return self._with_clicks(self._region(image, relative_box, score, expression), clicks, labels, keep_box=True)

    @staticmethod
    def _check_clicks(image, points, point_labels):
        from model.processing import ImageFrame, check_point_prompts

        return check_point_prompts(points, point_labels, ImageFrame(width=image.width, height=image.height))

    def _with_clicks(self, region: FakeRegion, clicks, labels, keep_box: bool) -> FakeRegion:
        """Each positive click adds a square of side CLICK_SQUARE_PX around it to the mask, each negative click
        then removes one (so a test can tell every click's effect). As the model: the box stays the given or
        located one (``keep_box``), else it is the mask's."""
        mask = region.mask.copy()
        h, w = mask.shape
        half = self.CLICK_SQUARE_PX // 2
        for wanted in (1, 0):
            for (x, y), label in zip(clicks, labels):
                if label == wanted:
                    mask[max(int(y) - half, 0):int(y) + half, max(int(x) - half, 0):int(x) + half] = bool(wanted)
        ys, xs = np.nonzero(mask)
        box = region.box
        if not keep_box and len(xs):
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
        return FakeRegion(box=box, mask=mask, score=region.score, phrase=region.phrase)


# ----------------------------------------------------------------------------- Label Studio bodies
def ls_task(task_id: int, image: str, **data) -> dict:
    """A task as Label Studio 1.23.2 sends it in /predict (docs/label-studio.md)."""
    return {
        "id": task_id, "data": {"image": image, **data}, "meta": {}, "created_at": "2026-11-25T10:00:00.000000Z",
        "updated_at": "2026-11-25T10:00:00.000000Z", "is_labeled": False, "overlap": 1, "inner_id": task_id,
        "total_annotations": 0, "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0,
        "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": 1, "updated_by": None,
        "file_upload": None, "comment_authors": [], "annotations": [], "predictions": [],
    }


def predict_body(tasks: list[dict], config: str, context=None, password=None) -> dict:
    return {"tasks": tasks, "project": "1.1795611766", "label_config": config,
            "params": {"login": None, "password": password, "context": context}}


def setup_body(config: str, access_token: str = "probe0token0legacy0123456789abcdef") -> dict:
    return {"project": "1.1795611766", "schema": config, "hostname": "http://localhost:8080",
            "access_token": access_token, "extra_params": None}


def drawn_box_context(label="person", from_name="box", x=10.0, y=20.0, width=30.0, height=40.0, **extra) -> dict:
    """Context of a box drawn with the smart tool (docs/label-studio.md)."""
    percent = {"x": x, "y": y, "width": width, "height": height, **extra}
    item = drawn_rectangle("W4yQRdm34L", from_name, "image", percent, 640, 480, label)
    return {"result": [item]}


def click_item(x: float, y: float, positive: bool | None = True, label: str = "object", from_name: str = "click",
               item_id: str = "kp0000001", width: int = 640, height: int = 480) -> dict:
    """A click with the smart key point tool as Label Studio 1.23.2's editor serializes it (KeyPointRegion:
    ``is_positive`` false after Alt+click, the labels also as ``value.labels``); ``positive=None`` leaves
    ``is_positive`` out."""
    item = {"original_width": width, "original_height": height, "image_rotation": 0,
            "value": {"x": x, "y": y, "width": 0.625, "keypointlabels": [label], "labels": [label]},
            "id": item_id, "from_name": from_name, "to_name": "image", "type": "keypointlabels", "origin": "manual"}
    if positive is not None:
        item["is_positive"] = positive
    return item


def click_context(*clicks: tuple, label: str = "object", **extra) -> dict:
    """Context of clicks (x%, y%[, positive]) in the order they were made: the smart key points of one label."""
    return {"result": [click_item(*click, label=label, item_id=f"kp{index:07d}", **extra)
                       for index, click in enumerate(clicks)]}


def textarea_context(text: str, from_name: str = "prompt") -> dict:
    """Context of text typed into a TextArea and submitted (docs/label-studio.md)."""
    return {"result": [{"value": {"text": [text]}, "id": "_w2iFDLtHy", "from_name": from_name,
                        "to_name": "image", "type": "textarea", "origin": "manual"}]}


# ----------------------------------------------------------------------------- loopback image server
class ImageServer:
    """HTTP server on 127.0.0.1 (never any other address). `routes` maps a path (no query) to a
    callable(handler) that writes the whole response. `hits` lists (path, headers) of requests."""

    def __init__(self, routes: dict, tls: tuple[str, str] | None = None):
        self.routes = routes
        self.scheme = "https" if tls else "http"
        self.hits: list[tuple[str, dict]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _serve(self):
                server.hits.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = _serve
            do_POST = _serve

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def paths_hit(self) -> list[str]:
        return [path for path, _ in self.hits]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def send_bytes(data: bytes, status: int = 200, content_type: str = "image/png"):
    def route(handler):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    return route


def send_redirect(location: str, status: int = 302):
    def route(handler):
        handler.send_response(status)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def send_chunked(data: bytes, chunk: int = 4096, pause_s: float = 0.0):
    def route(handler):
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(data), chunk):
            piece = data[start : start + chunk]
            handler.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            handler.wfile.flush()
            if pause_s:
                time.sleep(pause_s)
        handler.wfile.write(b"0\r\n\r\n")

    return route


def send_nothing_for(seconds: float):
    def route(handler):
        time.sleep(seconds)

    return route


# ----------------------------------------------------------------------------- app + checks
def make_app(model=None, exporter=None, image_loader=None, **overrides):
    """An app on the fake model (or `model`), settings from `overrides` only (never the env)."""
    from backend.http.app import create_app
    from backend.settings import load_settings

    settings = load_settings({}, **overrides)
    model = FakeNextChat() if model is None else model
    return create_app(settings, model, exporter=exporter, image_loader=image_loader)


def check_results_fit_config(results: list[dict], config_xml: str, width: int, height: int, *,
                             task_data: dict | None = None, sizes: dict[int, tuple[int, int]] | None = None) -> None:
    """Every result names a control of the config, its Image, one of its labels (choices); geometry in percent
    within [0, 100]; polygons >= 3 points; brush RLE / bitmask PNG decode to (height, width); per-region text
    and choices ids point at a shape in the same list. `task_data`: the config as resolved for that task
    (dynamic labels, Repeaters); `sizes`: item_index -> (width, height) of a valueList Image's images."""
    from backend.studio.geometry import brush_rle_to_mask
    from backend.studio.labeling import parse_label_config
    from backend.studio.results.bitmask import bitmask_url_to_mask
    from backend.studio.task_config import config_for_task

    config = parse_label_config(config_xml)
    if task_data is not None:
        config = config_for_task(config, task_data)
    shape_ids = {r["id"] for r in results if r["type"] not in ("textarea", "choices")}
    for result in results:
        control = config.control(result["from_name"])
        assert control is not None, result["from_name"]
        assert result["to_name"] == control.to_name
        if sizes is not None:
            assert result.get("item_index") in sizes or result["type"] == "textarea", result
            if "original_width" in result:
                width, height = sizes[result["item_index"]]
        value = result["value"]
        if result["type"] == "textarea":
            assert isinstance(value["text"], list) and all(isinstance(t, str) for t in value["text"])
            if getattr(control, "per_region", False):
                assert result["id"] in shape_ids
            continue
        if result["type"] == "choices":
            assert set(value["choices"]) <= {choice.result_value for choice in control.choices}, value
            assert value["choices"] and (control.multiple or len(value["choices"]) == 1)
            assert 0.0 <= result.get("score", 0.0) <= 1.0
            assert (result["id"] in shape_ids) == control.per_region
            continue
        assert result["type"] == control.kind
        assert set(value[control.kind]) <= {label.value for label in control.labels}
        assert (result["original_width"], result["original_height"]) == (width, height)
        assert 0.0 <= result.get("score", 0.0) <= 1.0
        if control.kind == "rectanglelabels":
            assert 0 <= value["x"] <= 100 and 0 <= value["y"] <= 100
            assert value["x"] + value["width"] <= 100 + 1e-6 and value["y"] + value["height"] <= 100 + 1e-6
        elif control.kind == "polygonlabels":
            assert len(value["points"]) >= 3
            assert all(0 <= c <= 100 for point in value["points"] for c in point)
        elif control.kind == "bitmasklabels":
            assert bitmask_url_to_mask(value["imageDataURL"], width, height).any()
        else:
            assert brush_rle_to_mask(value["rle"], width, height).shape == (height, width)
