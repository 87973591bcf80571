"""Rules that live in one place: the CLI and the backend feed the model identical pixels; `batch --labels`
keeps every option of a control."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from backend.batch.job import restrict_labels
from backend.images import decode_image
from backend.settings import load_settings
from backend.studio.labeling import parse_label_config
from tests.backend.fakes import FakeNextChat, data_uri, ls_task, make_app, predict_body


def rgba_png() -> bytes:
    pixels = np.zeros((20, 30, 4), np.uint8)
    pixels[..., 0] = 200
    pixels[..., 3] = np.linspace(0, 255, 30, dtype=np.uint8)[None, :]  # transparent on the left
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    return buffer.getvalue()


def sixteen_bit_png() -> bytes:
    values = (np.arange(600, dtype=np.uint32).reshape(20, 30) * 109).astype(np.uint16)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, "PNG")
    return buffer.getvalue()


class RecordingModel(FakeNextChat):
    def __init__(self):
        super().__init__()
        self.images = []

    def ground(self, image, expression, max_new_tokens=32):
        self.images.append(np.asarray(image).copy())
        return super().ground(image, expression)

    def ground_many(self, image, expressions):
        self.images.append(np.asarray(image).copy())
        return super().ground_many(image, expressions)


def pixels_through_the_cli(path: Path, monkeypatch) -> np.ndarray:
    import model as model_package
    from model.__main__ import parse_args, run

    recorder = RecordingModel()
    monkeypatch.setattr(model_package.NextChat, "from_pretrained", classmethod(lambda cls, *a, **k: recorder))
    run(parse_args([str(path), "a dog", "--checkpoint", "unused", "--task", "ground"]))
    return recorder.images[0]


def pixels_through_the_backend(data: bytes) -> np.ndarray:
    recorder = RecordingModel()
    config = ('<View><Image name="image" value="$image"/>'
              '<RectangleLabels name="box" toName="image"><Label value="dog"/></RectangleLabels></View>')
    reply = make_app(recorder).test_client().post("/predict", json=predict_body([ls_task(1, data_uri(data))], config))
    assert reply.status_code == 200
    return recorder.images[0]


def test_cli_and_backend_feed_identical_pixels(tmp_path, monkeypatch):
    for name, data in (("rgba.png", rgba_png()), ("sixteen.png", sixteen_bit_png())):
        path = tmp_path / name
        path.write_bytes(data)
        through_cli = pixels_through_the_cli(path, monkeypatch)
        through_backend = pixels_through_the_backend(data)
        assert through_cli.shape == (20, 30, 3) and through_cli.dtype == np.uint8
        assert np.array_equal(through_cli, through_backend), name
        assert np.array_equal(np.asarray(decode_image(data, load_settings({}))), through_cli)
    transparent_column = pixels_through_the_backend(rgba_png())[:, 0]
    assert (transparent_column == 255).all()  # fully transparent pixels are composited on white
    gray = pixels_through_the_backend(sixteen_bit_png())[..., 0]
    assert gray.max() == round(599 * 109 / 257)  # 16-bit values scaled by 255/65535, not stretched


def test_batch_labels_keep_every_control_option():
    xml = ('<View><Image name="image" value="$image"/>'
           '<RectangleLabels name="box" toName="image" smart="false" matchContains="false" '
           'matchSimilarity="false" minSimilarity="0.95">'
           '<Label value="cat"/><Label value="dog"/><Label value="other" catch_all="true"/></RectangleLabels></View>')
    target = parse_label_config(xml).targets[0]
    control = target.region_controls[0]
    restricted = restrict_labels(target, ["dog"]).region_controls[0]
    assert [label.value for label in restricted.labels] == ["dog", "other"]
    for option in ("smart", "match_contains", "match_similarity", "min_similarity"):
        assert getattr(restricted, option) == getattr(control, option), option
    assert (restricted.match_contains, restricted.min_similarity, restricted.smart) == (False, 0.95, False)
