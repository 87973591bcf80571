"""Benchmark the backend's interactive path: ms per click, per drawn box and per typed prompt through /predict.

    python -m benchmarks.bench_backend_interactive --size small [--threads 1] [--repeats 10]
        [--out benchmarks/results/cpu_small_backend_interactive.json]

The model-side figures (benchmarks/bench_interactive.py) time the model call alone. This one times what an
annotator waits for once Label Studio has forwarded the call: the Flask app from ``backend.http.app`` on the
model (a random *locating* checkpoint), each interactive context posted to ``/predict`` through Flask's test
client, with the image fetched over HTTP from a loopback server (as from Label Studio) and decoded, the
model call, and the answer built (brush RLE, polygons, JSON). The image session is warm (one call first), as
it is for an annotator working on one image. Label Studio's own hop (browser -> Label Studio -> backend) is
not in these figures. Not a test: nothing asserts a time.

The random weights' masks are noise over the whole image, which no real model gives: their brush RLE and
polygons (thousands of parts) cost seconds to build and to read back. By default (``--masks ellipse``) every
mask the model returns is therefore replaced by the filled ellipse inside its box, so that the answer costs
what a compact object's mask costs; the model computes as before. ``--masks model`` keeps the noise.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import platform
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch

from backend.dev.demo import draw_sample_image
from backend.dev.samples import drawn_rectangle
from backend.http.app import create_app
from backend.settings import load_settings
from backend.studio.geometry import brush_rle_to_mask
from model.builder import parse_dtype

from .common import emit_report, load_from_disk, time_call
from .report import _table

CONFIGS = Path(__file__).resolve().parents[1] / "label_config"


def parse_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_backend_interactive",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--checkpoint", help="use this checkpoint folder (its tower in ./vision_tower)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="fp32, bf16 or fp16 (default fp32 on cpu, bf16 on cuda)")
    parser.add_argument("--repeats", type=int, default=10, help="timed requests per interaction; the median is kept")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--masks", choices=["ellipse", "model"], default="ellipse",
                        help="ellipse: each mask becomes the filled ellipse in its box (see above); model: as returned")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    args.dtype = parse_dtype(args.dtype or ("bf16" if args.device.startswith("cuda") else "fp32"))
    return args


def click(x: float, y: float, positive: bool = True, index: int = 0) -> dict:
    """A smart key point as Label Studio 1.23.2's editor sends it."""
    return {"original_width": 640, "original_height": 480, "image_rotation": 0, "is_positive": positive,
            "value": {"x": x, "y": y, "width": 0.6, "keypointlabels": ["object"], "labels": ["object"]},
            "id": f"kp{index:08d}", "from_name": "click", "to_name": "image", "type": "keypointlabels",
            "origin": "manual"}


def contexts(predicted_point: tuple[float, float]) -> dict:
    """interaction -> (config file, context, with the task's prediction attached)."""
    three = [click(45.0, 50.0), click(30.0, 40.0, index=1), click(60.0, 70.0, False, index=2)]
    box = drawn_rectangle("DrawnBox01", "box", "image", {"x": 20.0, "y": 25.0, "width": 50.0, "height": 55.0},
                          640, 480, "region")
    prompt = {"value": {"text": ["the red car on the left"]}, "id": "typed00001", "from_name": "prompt",
              "to_name": "image", "type": "textarea", "origin": "manual"}
    return {
        "click: 1 point (click_to_mask.xml: brush)": ("click_to_mask.xml", [click(45.0, 50.0)], False),
        "click: 3 points, 1 negative (click_to_mask.xml)": ("click_to_mask.xml", three, False),
        "click on a predicted region: refine (click_to_mask.xml)": (
            "click_to_mask.xml", [click(*predicted_point)], True),
        "click: 3 points (all_in_one.xml: box, polygon, brush, description)": ("all_in_one.xml", three, False),
        "drawn box (region_descriptions.xml: description, polygon)": ("region_descriptions.xml", [box], False),
        "typed prompt (referring_prompt.xml: box, polygon)": ("referring_prompt.xml", [prompt], False),
    }


class CompactMasks:
    """The model, with every returned mask replaced by the filled ellipse inside the region's box."""

    def __init__(self, model):
        self.model = model

    def __getattr__(self, name):
        return getattr(self.model, name)

    @staticmethod
    def _compact(region):
        import cv2

        mask = np.zeros(region.mask.shape, dtype=np.uint8)
        x0, y0, x1, y1 = region.box
        centre = (int((x0 + x1) / 2), int((y0 + y1) / 2))
        axes = (max(int((x1 - x0) / 2), 1), max(int((y1 - y0) / 2), 1))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, thickness=-1)
        region.mask = mask.astype(bool)
        return region

    def ground(self, image, expression):
        return [self._compact(region) for region in self.model.ground(image, expression)]

    def ground_many(self, image, expressions):
        return [[self._compact(region) for region in found] for found in self.model.ground_many(image, expressions)]

    def segment(self, image, box=None, points=None, point_labels=None):
        return self._compact(self.model.segment(image, box, points, point_labels))

    def refine(self, image, expression, points, point_labels=None, region_index=0):
        return self._compact(self.model.refine(image, expression, points, point_labels, region_index))

    def ask(self, image, question, boxes=None):
        answer = self.model.ask(image, question, boxes)
        answer.regions = [self._compact(region) for region in answer.regions]
        return answer


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    quiet = type("Quiet", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def post(client, config: str, task: dict, context) -> dict:
    body = {"tasks": [task], "label_config": config, "project": "1.1",
            "params": {"context": None if context is None else {"result": context}}}
    reply = client.post("/predict", json=body)
    if reply.status_code != 200:
        raise SystemExit(f"error: /predict answered {reply.status_code}: {reply.get_data(as_text=True)[:200]}")
    return reply.get_json()["results"][0]


def inside_a_predicted_mask(prediction: dict) -> tuple[float, float]:
    """A point (percent) inside the first predicted brush mask, for the click on a predicted region."""
    brushes = [item for item in prediction["result"] if item["type"] == "brushlabels"]
    if not brushes:
        raise SystemExit("error: pre-annotation located nothing to click on; use a locating checkpoint")
    rows, columns = np.nonzero(brush_rle_to_mask(brushes[0]["value"]["rle"], 640, 480))
    middle = len(rows) // 2
    return ((columns[middle] + 0.5) / 640 * 100, (rows[middle] + 0.5) / 480 * 100)


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_backend_") as workdir:
        work = Path(workdir)
        nc, source = load_from_disk(args.size, args.checkpoint, args.device, args.dtype, work)
        draw_sample_image(work / "images" / "task.png", (640, 480), seed=0)
        server, host = serve(work / "images")
        try:
            settings = load_settings({}, allowed_image_hosts=(host,), request_deadline_s=600.0)
            client = create_app(settings, CompactMasks(nc) if args.masks == "ellipse" else nc).test_client()
            task = {"id": 1, "data": {"image": f"http://{host}/task.png"}}
            prediction = post(client, (CONFIGS / "click_to_mask.xml").read_text(), task, None)  # warms the session
            predicted = {**task, "predictions": [{"result": prediction["result"], "created_at": "2026-01-01"}]}
            report = {"environment": environment(args, nc), "model": source, "warm_ms": {}}
            for name, (config, context, with_prediction) in contexts(inside_a_predicted_mask(prediction)).items():
                xml = (CONFIGS / config).read_text()
                call = functools.partial(post, client, xml, predicted if with_prediction else task, context)
                timing = time_call(call, torch.device(args.device), args.repeats)
                report["warm_ms"][name] = {"median_ms": round(timing["median_s"] * 1000, 3),
                                           "min_ms": round(timing["min_s"] * 1000, 3),
                                           "result_types": sorted({item["type"] for item in call()["result"]})}
            image = _open(work / "images" / "task.png")  # the same content: the same warm session
            model_only = time_call(lambda: nc.segment(image, points=[(288.0, 240.0)]), torch.device(args.device),
                                   args.repeats)
            report["model_only_click_ms"] = {"median_ms": round(model_only["median_s"] * 1000, 3),
                                             "min_ms": round(model_only["min_s"] * 1000, 3)}
        finally:
            server.shutdown()
            server.server_close()
    return report


def _open(path: Path):
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def environment(args, nc) -> dict:
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "device": args.device, "dtype": str(args.dtype).replace("torch.", ""), "size": args.size,
            "image_size": [640, 480], "repeats": args.repeats, "model_version": nc.model_version, "masks": args.masks,
            "cpu_count": os.cpu_count(), "load_average_1m_at_start": round(os.getloadavg()[0], 2),
            "cpu": platform.processor() or platform.machine()}


def render(report: dict) -> str:
    rows = [[name, f"{t['median_ms']:.1f}", f"{t['min_ms']:.1f}", ", ".join(t["result_types"])]
            for name, t in report["warm_ms"].items()]
    model = report["model_only_click_ms"]
    rows.append(["of a click: the model call alone (NextChat.segment, 1 point)", f"{model['median_ms']:.1f}",
                 f"{model['min_ms']:.1f}", "-"])
    env = report["environment"]
    title = (f"POST /predict, {env['size']} on {env['device']} ({env['dtype']}, {env['threads']} threads), 640x480, "
             f"masks: {env['masks']}")
    return title + "\n" + _table(["interactive call (warm session)", "median ms", "min ms", "answer"], rows)


def main(argv=None) -> int:
    args = parse_args(argv)
    report = run(args)
    emit_report(report, args.out, render(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
