"""The pieces of a batch job that need no model: folder walk, image references, configs, state, JSON."""

from __future__ import annotations

import json
import os

import pytest

from backend.batch.job import JobError, default_label_config
from backend.batch.source import WalkCounts, count_images, iter_image_keys
from backend.batch.state import StateFile, write_json_array
from backend.studio.labeling import parse_label_config

from .conftest import spec_for


def test_walk_is_lazy_recursive_and_filters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / ".git").mkdir()
    for name in ("x.JPG", "a/y.png", "a/b/z.webp", "a/readme.txt", ".git/hidden.png", "a/.dot.png", "noext"):
        (tmp_path / name).write_bytes(b"x")
    os.symlink(tmp_path / "a", tmp_path / "loop")          # a link to a folder is not followed
    counts = WalkCounts()
    walker = iter_image_keys(str(tmp_path), counts)
    assert not isinstance(walker, list | tuple)
    assert sorted(walker) == ["a/b/z.webp", "a/y.png", "x.JPG"]
    assert counts.ignored == 3      # readme.txt, noext, the folder link
    assert count_images(str(tmp_path)) == 3


def test_image_references(tmp_path, random_tiny_checkpoint):
    folder = tmp_path / "my images"
    folder.mkdir()
    local = spec_for(folder, random_tiny_checkpoint, document_root=tmp_path)
    assert local.image_reference("sub/a b.png") == "/data/local-files/?d=my%20images/sub/a%20b.png"
    absolute = spec_for(folder, random_tiny_checkpoint)
    assert absolute.image_reference("sub/a b.png") == str(folder / "sub" / "a b.png")
    with pytest.raises(JobError, match="not inside the document root"):
        spec_for(folder, random_tiny_checkpoint, document_root=tmp_path / "other")


def test_default_config_and_label_subset(tmp_path, random_tiny_checkpoint):
    target = parse_label_config(default_label_config(["dog", 'a "big" cat'])).targets[0]
    assert [(c.name, c.kind, [label.value for label in c.labels]) for c in target.region_controls] == [
        ("box", "rectanglelabels", ["dog", 'a "big" cat']), ("polygon", "polygonlabels", ["dog", 'a "big" cat'])]
    config = '''<View><Image name="img" value="$photo"/>
      <RectangleLabels name="r" toName="img"><Label value="dog"/><Label value="cat"/>
      <Label value="thing" catch_all="true"/></RectangleLabels></View>'''
    spec = spec_for(tmp_path, random_tiny_checkpoint, labels=["cat"], label_config=config)
    target = spec.target()
    assert target.value_key == "photo"
    assert [label.value for label in target.region_controls[0].labels] == ["cat", "thing"]
    with pytest.raises(JobError, match="not in the label config"):
        spec_for(tmp_path, random_tiny_checkpoint, labels=["cow"], label_config=config)
    with pytest.raises(JobError, match="label config"):
        spec_for(tmp_path, random_tiny_checkpoint, label_config="<View><Image")
    pages = ('<View><Image name="i" valueList="$pages"/>'
             '<RectangleLabels name="r" toName="i"><Label value="dog"/></RectangleLabels></View>')
    with pytest.raises(JobError, match="takes a list of images"):
        spec_for(tmp_path, random_tiny_checkpoint, label_config=pages)


def test_state_file_roundtrip(tmp_path):
    path = tmp_path / "s.jsonl"
    state = StateFile(path, "f1").open()
    state.add_task("a.png", {"data": {"image": "a"}})
    state.add_failure("b.png", "bad image: x")
    state.add_task("c.png", {"data": {"image": "c"}})
    state.close()
    reopened = StateFile(path, "f1").open()
    reopened.add_task("b.png", {"data": {"image": "b"}})
    reopened.close()
    assert reopened.done == {"a.png", "b.png", "c.png"}
    assert [key for key, _ in reopened.iter_tasks()] == ["a.png", "c.png", "b.png"]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_json_array_is_streamed_valid_json(tmp_path, count):
    out = tmp_path / "out.json"
    written = write_json_array(({"data": {"image": str(i)}} for i in range(count)), out)
    assert written == count and json.loads(out.read_text()) == [{"data": {"image": str(i)}} for i in range(count)]
    assert not (tmp_path / "out.json.tmp").exists()
