"""Stage-3 data read as the reference reads it: decoded masks, 1024 targets, SAM inputs, split, templates."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from model import prompts
from model.processing import sam_pixel_values
from model.stage3.data import (
    Stage3DataError,
    decode_mask,
    load_image,
    parse_record,
    read_records,
    split_by_image,
    target_1024,
)
from model.stage3.samples import epoch_queries
from model.stage3.templates import question_turn, reference_pool
from tests.model.stage3_common import DATA_DIR, expected


def sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


@pytest.fixture(scope="module")
def records():
    return read_records(DATA_DIR)


def per_sample(index: int) -> dict:
    return expected()["first_step"][index // 2]["per_sample"][index % 2]


def test_records_and_decoded_masks(records):
    assert len(records) == 7
    for index, record in enumerate(records):
        ref = expected()["records"][index]
        assert (record.img_path, record.expressions[0], list(record.bbox)) == (
            ref["img_path"], ref["expression_used"], ref["bbox_xyxy"])
        mask = decode_mask(record)
        assert mask.shape == (record.height, record.width) and mask.dtype == np.uint8
        stats = ref["decoded_mask"]
        assert (int(mask.sum()), int((mask > 0).sum()), int((mask == 2).sum())) == (
            stats["sum"], stats["positives"], stats["twos"])
        assert sha256(mask) == stats["sha256_uint8"]


def test_targets_and_sam_inputs_are_bit_exact(records):
    for index, record in enumerate(records):
        target = target_1024(decode_mask(record))
        ref = per_sample(index)
        assert sha256(target) == ref["target_1024"]["sha256_uint8"]
        assert sha256(target.astype(np.float32)) == ref["target_1024"]["sha256_float32"]
        values, counts = np.unique(target, return_counts=True)
        assert {str(v): int(c) for v, c in zip(values, counts)} == ref["target_1024"]["value_counts"]
        pixels = sam_pixel_values(load_image(DATA_DIR, record)).numpy()
        assert sha256(pixels.astype(np.float32)) == ref["images_sam"]["sha256_float32"]


def test_a_bare_rle_is_read_as_one_part(records):
    rle_record = records[3]
    bare = json.loads((DATA_DIR / "res.jsonl").read_text().splitlines()[3])
    bare["mask"] = bare["mask"][0]
    assert np.array_equal(decode_mask(parse_record(json.dumps(bare), 4)), decode_mask(rle_record))


@pytest.mark.parametrize("line, reason", [
    ("not json", "not JSON"),
    ('{"img_path": "a.png"}', "missing ['expressions', 'height', 'width', 'mask']"),
    ('{"img_path": "a.png", "expressions": [], "height": 2, "width": 2, "mask": [[0,0,1,0,1,1]]}', "expressions"),
    ('{"img_path": "a.png", "expressions": ["x"], "height": 0, "width": 2, "mask": [[0,0,1,0,1,1]]}', "image size"),
    ('{"img_path": "a.png", "expressions": ["x"], "height": 2, "width": 2, "mask": []}', "mask must be"),
])
def test_bad_records_get_one_line_reasons(line, reason):
    with pytest.raises(Stage3DataError) as caught:
        parse_record(line, 9)
    message = str(caught.value)
    assert message.startswith("res.jsonl line 9: ") and reason in message and "\n" not in message


def test_image_of_another_size_is_refused(records, tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a_96x64.png").write_bytes((DATA_DIR / "images" / "b_50x80.png").read_bytes())
    with pytest.raises(Stage3DataError, match="is 50x80, record says 96x64"):
        load_image(tmp_path, records[0])


def test_split_is_by_image_and_stable_as_records_are_added(records):
    more = records + [parse_record(json.dumps({"img_path": f"new_{i}.png", "expressions": ["x"], "height": 4,
                                                "width": 4, "mask": [[0, 0, 3, 0, 3, 3]]}), 8 + i)
                      for i in range(40)]
    train, val = split_by_image(more, 0.5)
    assert train and val and sorted(train + val) == list(range(len(more)))
    side = {more[i].img_path: "val" for i in val} | {more[i].img_path: "train" for i in train}
    assert len(side) == len({r.img_path for r in more})   # an image never on both sides
    small_train, small_val = split_by_image(records, 0.5)
    assert small_val == [i for i in val if i < len(records)] and small_train == [i for i in train if i < 7]
    assert split_by_image(records, 0.0) == (list(range(7)), [])


def test_templates():
    pool = reference_pool()
    assert len(pool) == len(set(pool)) == 60
    assert pool[1] == prompts.REC_TEMPLATE and pool[0] == "Where is {expr}?"
    assert "Please find {expr}." in pool and "Locate {expr} in the image" in pool
    turn = question_turn(prompts.REC_TEMPLATE, "the <at> cat")
    assert turn == prompts.referring("the <at> cat")   # the expression stays user text


def test_epoch_plans(records):
    replay = epoch_queries(list(range(7)), records, 0, order="file", expression="first", template="backend", seed=0)
    assert [q.record_index for q in replay] == list(range(7))
    assert all(q.expression == records[q.record_index].expressions[0] for q in replay)
    shuffled = [epoch_queries(list(range(7)), records, e, order="shuffle", expression="random",
                              template="reference-pool", seed=0) for e in range(3)]
    assert shuffled[0] == epoch_queries(list(range(7)), records, 0, order="shuffle", expression="random",
                                        template="reference-pool", seed=0)   # seeded
    assert len({tuple(q.record_index for q in plan) for plan in shuffled}) > 1
    assert all(q.expression in records[q.record_index].expressions for plan in shuffled for q in plan)
